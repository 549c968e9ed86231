/*
 * NAME
 *	hikyaku - the relay daemon (SPEC §2)
 * SUMMARY
 *	hikyaku [-c FILE] [--check]
 *	Runs in the foreground: loads the configuration, opens the queue and
 *	the log, listens, and runs the libuv loop until SIGTERM or SIGINT.
 *	SIGHUP reloads the configuration; an invalid file is refused and the
 *	old configuration stays in force. SIGUSR1 reopens the log file (for
 *	logrotate). Under systemd (Type=notify) it reports READY=1 once it
 *	listens, RELOADING=1 around a reload and STOPPING=1. The control
 *	socket (server/control.h) serves hikyakuctl's queue and status;
 *	with [metrics] listen, server/metrics_http.h serves /metrics and
 *	/health, the counters fed by the log's observer (util/metrics.h).
 * DIAGNOSTICS
 *	Exit 0 after a clean stop or a valid --check, 2 for a usage or
 *	configuration error, 1 when the daemon cannot start (port in use,
 *	queue directory not writable ...). Problems go to stderr, one line each.
 * TOUCHES
 *	Everything the server, the queue and the log touch.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "config/config.h"
#include "relay/queue.h"
#include "relay/runner.h"
#include "server/server.h"
#include "util/eventlog.h"
#include "server/control.h"
#include "server/metrics_http.h"
#include "util/metrics.h"

struct daemon {
	uv_loop_t *loop;
	struct server srv;
	struct queue *queue;
	struct runner *runner;
	struct evlog *log;
	char *config_path;
	struct control *control;   /* NULL when the socket could not be opened */
	struct metrics *metrics;   /* the counters, fed by the log (SPEC §9) */
	struct metrics_http *http; /* [metrics] listen; NULL: off */
	uv_signal_t sigterm, sigint, sighup, sigusr1;
	uv_timer_t deadline;       /* bounds the stop: deliveries may hang */
	bool forced;               /* the deadline stopped the loop */
};

#define STOP_DEADLINE_MS (SERVER_DRAIN_MS + 10000)

static void usage(FILE *fp)
{
	fprintf(fp, "usage: hikyaku [-c FILE] [--check]\n"
	            "  -c FILE   configuration file (default: $HIKYAKU_CONFIG or %s)\n"
	            "  --check   validate the configuration and exit (0 valid, 2 invalid)\n"
	            "  -V        print the version\n",
	        "/etc/hikyaku/hikyaku.conf");
}

static int load_config(const char *path, struct config **cfg)
{
	struct config_diags diags = { 0 };
	int rc = config_load(path, cfg, &diags);
	for (size_t i = 0; i < diags.n; i++)
		fprintf(stderr, "%s\n", diags.v[i].text);
	config_diags_free(&diags);
	return rc;
}

static void stopped(struct server *srv)
{
	struct daemon *d = (struct daemon *)((char *)srv - offsetof(struct daemon, srv));
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	uv_close((uv_handle_t *)&d->sigusr1, NULL);
	control_close(d->control);
	d->control = NULL;
	/* /health said 503 while the sessions drained; now it goes. */
	metrics_http_close(d->http);
	d->http = NULL;
}

/* The control socket is for the operator: without it (a stale daemon
 * holds the path, the directory is not writable) mail still flows. */
static void open_control(struct daemon *d, const char *path)
{
	char err[512];
	if (control_open(d->loop, path, &d->srv, &d->control, err, sizeof(err)) < 0) {
		d->control = NULL;
		fprintf(stderr, "hikyaku: %s; hikyakuctl queue and status will not reach this "
		                "daemon\n", err);
	}
}

/* logrotate: the log file was moved away; write to a new one. */
static void on_usr1(uv_signal_t *h, int signum)
{
	(void)signum;
	struct daemon *d = h->data;
	if (evlog_reopen(d->log) < 0)
		fprintf(stderr, "hikyaku: cannot reopen the log; still writing to the old file\n");
}

static void runner_stopped(void *arg)
{
	struct daemon *d = arg;
	uv_close((uv_handle_t *)&d->deadline, NULL);
}

static void stop_deadline(uv_timer_t *t)
{
	struct daemon *d = t->data;
	fprintf(stderr, "hikyaku: deliveries still under way after %d s; stopping anyway "
	                "(their mail stays queued)\n", STOP_DEADLINE_MS / 1000);
	d->forced = true;
	uv_stop(d->loop);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	if (uv_is_active((uv_handle_t *)&d->deadline))
		return;
	fprintf(stderr, "hikyaku: %s received, stopping\n", strsignal(signum));
	sd_notify(0, "STOPPING=1");
	uv_timer_start(&d->deadline, stop_deadline, STOP_DEADLINE_MS, 0);
	server_stop(&d->srv, stopped);
	runner_stop(d->runner, runner_stopped, d);
}

static void on_hup(uv_signal_t *h, int signum)
{
	(void)signum;
	struct daemon *d = h->data;
	struct config *cfg = NULL;
	if (d->srv.stopping)
		return; /* stopping: a reload would open the listeners again */
	/* Reading a small file is quick; the loop pauses for it only on a
	 * SIGHUP, which the operator sends by hand. */
	sd_notify(0, "RELOADING=1");
	if (load_config(d->config_path, &cfg) < 0) {
		fprintf(stderr, "hikyaku: reload refused: %s has errors; the running "
		                "configuration stays in force\n", d->config_path);
		sd_notify(0, "READY=1");
		return;
	}
	const struct config *old = d->srv.set->cfg;
	if (strcmp(old->queue.dir, cfg->queue.dir) != 0)
		fprintf(stderr, "hikyaku: reload: [queue] dir changed; it takes effect at restart\n");
	bool log_changed = strcmp(old->log.file, cfg->log.file) != 0;
	char err[512] = "";
	char *newlog = log_changed ? strdup(cfg->log.file) : NULL;
	if (server_reload(&d->srv, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "hikyaku: reload refused: %s; the running configuration "
		                "stays in force\n", err);
		config_free(cfg);
		free(newlog);
		sd_notify(0, "READY=1");
		return;
	}
	runner_reload(d->runner, d->srv.set->cfg);
	if (metrics_http_reload(&d->http, &d->srv, d->metrics, &d->srv.set->cfg->metrics.listen,
	                        err, sizeof(err)) < 0)
		fprintf(stderr, "hikyaku: reload: %s\n", err);
	const char *sock = d->srv.set->cfg->control.socket;
	if (!d->control || strcmp(control_path(d->control), sock) != 0) {
		control_close(d->control);
		open_control(d, sock);
	}
	if (newlog) {
		struct evlog *nl;
		if (evlog_open(newlog, &nl) == 0) {
			evlog_set_observer(nl, metrics_observe, d->metrics);
			evlog_close(d->log);
			d->log = nl;
			d->srv.log = nl;
			runner_set_log(d->runner, nl);
		} else {
			fprintf(stderr, "hikyaku: reload: cannot open log %s; keeping the old one\n", newlog);
		}
		free(newlog);
	} else {
		evlog_reopen(d->log);
	}
	fprintf(stderr, "hikyaku: configuration reloaded from %s\n", d->config_path);
	sd_notify(0, "READY=1");
}

/* A start that fails after the runner and the server exist stops them
 * as a shutdown does, with nothing to wait for. */
static void startup_server_stopped(struct server *srv)
{
	(void)srv;
}

static void startup_runner_stopped(void *arg)
{
	(void)arg;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "check", no_argument, NULL, 'k' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool check = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'k': check = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("hikyaku %s\n", HIKYAKU_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!path)
		path = config_default_path();

	struct config *cfg = NULL;
	if (load_config(path, &cfg) < 0)
		return 2;
	if (check) {
		config_free(cfg);
		return 0;
	}

	/* Every connection is a descriptor: take the hard limit, and say so
	 * when even that cannot hold max_connections (accept() would fail
	 * with EMFILE before the limit answers 421). */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		/* Room for the queue, the log, the database, DNS and deliveries. */
		if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->server.max_connections + 256)
			fprintf(stderr, "hikyaku: warning: the open file limit (%llu) is too low for "
			        "max_connections = %u; raise it (LimitNOFILE= in the systemd unit)\n",
			        (unsigned long long)rl.rlim_cur, cfg->server.max_connections);
	}

	/* Queue commits and password checks run on the thread pool; group
	 * commit wants several batches syncing at once. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	signal(SIGPIPE, SIG_IGN);

	struct daemon d;
	memset(&d, 0, sizeof(d));
	d.loop = uv_default_loop();
	d.config_path = strdup(path);
	int rc = metrics_new(&d.metrics);
	if (rc < 0) {
		fprintf(stderr, "hikyaku: %s\n", strerror(-rc));
		goto fail_log;
	}
	rc = evlog_open(cfg->log.file, &d.log);
	if (rc < 0) {
		fprintf(stderr, "hikyaku: cannot open log %s: %s\n", cfg->log.file, strerror(-rc));
		goto fail_log;
	}
	evlog_set_observer(d.log, metrics_observe, d.metrics);
	rc = queue_open(d.loop, cfg->queue.dir, &d.queue);
	if (rc < 0) {
		if (rc == -EBUSY)
			fprintf(stderr, "hikyaku: queue %s is in use by another hikyaku; one daemon "
			                "per queue directory\n", cfg->queue.dir);
		else
			fprintf(stderr, "hikyaku: cannot open queue %s: %s\n", cfg->queue.dir,
			        strerror(-rc));
		goto fail_queue;
	}
	/* Bound before the SMTP listeners, so that a port in use stops the
	 * start cleanly; it serves nothing before the loop runs. */
	char err[512] = "";
	if (cfg->metrics.listen.set &&
	    metrics_http_start(d.loop, &d.srv, d.metrics, &cfg->metrics.listen.addr, &d.http,
	                       err, sizeof(err)) < 0) {
		fprintf(stderr, "hikyaku: %s\n", err);
		goto fail_metrics;
	}
	rc = runner_new(d.loop, cfg, d.queue, d.log, &d.runner);
	if (rc < 0) {
		fprintf(stderr, "hikyaku: cannot start the queue runner: %s\n", strerror(-rc));
		goto fail_runner;
	}
	if (server_init(&d.srv, d.loop, cfg, d.queue, d.log, err, sizeof(err)) < 0) {
		fprintf(stderr, "hikyaku: %s\n", err);
		goto fail_server;
	}
	cfg = NULL; /* the server's settings hold it now */
	d.srv.runner = d.runner;
	if (server_listen(&d.srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "hikyaku: %s\n", err);
		server_stop(&d.srv, startup_server_stopped);
		goto fail_server;
	}
	runner_load(d.runner);
	open_control(&d, d.srv.set->cfg->control.socket);
	uv_timer_init(d.loop, &d.deadline);
	d.deadline.data = &d;
	uv_signal_init(d.loop, &d.sigterm);
	uv_signal_init(d.loop, &d.sigint);
	uv_signal_init(d.loop, &d.sighup);
	uv_signal_init(d.loop, &d.sigusr1);
	d.sigterm.data = d.sigint.data = d.sighup.data = d.sigusr1.data = &d;
	uv_signal_start(&d.sigterm, on_stop_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_stop_signal, SIGINT);
	uv_signal_start(&d.sighup, on_hup, SIGHUP);
	uv_signal_start(&d.sigusr1, on_usr1, SIGUSR1);

	const struct config *c = d.srv.set->cfg;
	for (size_t i = 0; i < c->server.nlisten; i++)
		fprintf(stderr, "hikyaku: listening on %s%s%s:%u\n",
		        strchr(c->server.listen[i].host, ':') ? "[" : "", c->server.listen[i].host,
		        strchr(c->server.listen[i].host, ':') ? "]" : "",
		        (unsigned)c->server.listen[i].port);
	fprintf(stderr, "hikyaku: %s ready, queue %s, log %s\n", c->server.hostname, c->queue.dir,
	        c->log.file);
	/* systemd Type=notify: the listeners are open, mail may come. */
	sd_notify(0, "READY=1");

	uv_run(d.loop, UV_RUN_DEFAULT);
	if (d.forced) {
		/* Handles are still open: nothing can be freed safely, and nothing
		 * needs to be: every mail answered 250 is on disk. */
		fprintf(stderr, "hikyaku: stopped\n");
		return 0;
	}

	server_free(&d.srv);
	runner_free(d.runner);
	queue_close(d.queue);
	evlog_close(d.log);
	uv_loop_close(d.loop);
	metrics_free(d.metrics);
	free(d.config_path);
	fprintf(stderr, "hikyaku: stopped\n");
	return 0;

	/* Before the loop runs: nothing to drain, release in reverse. The
	 * runner's handles and threads (the PostgreSQL store's sync thread)
	 * are stopped and closed before anything is freed. */
fail_server:
	runner_stop(d.runner, startup_runner_stopped, NULL);
	metrics_http_close(d.http);
	d.http = NULL;
	uv_run(d.loop, UV_RUN_DEFAULT);
	server_free(&d.srv);
	runner_free(d.runner);
	queue_close(d.queue);
	evlog_close(d.log);
	uv_loop_close(d.loop);
	metrics_free(d.metrics);
	config_free(cfg);
	free(d.config_path);
	return 1;
fail_runner:
	metrics_http_close(d.http);
	uv_run(d.loop, UV_RUN_NOWAIT);  /* its handles close */
fail_metrics:
	queue_close(d.queue);
fail_queue:
	evlog_close(d.log);
fail_log:
	metrics_free(d.metrics);
	config_free(cfg);
	free(d.config_path);
	return 1;
}
