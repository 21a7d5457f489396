/* Pass 1: layer headers -> tree, with the reading in worker threads.
 *
 * Reading a layer's headers still means decompressing the whole layer,
 * which dominates pass 1. Workers (one per core, up to 4) each take the
 * next unread layer, decompress it and queue clones of its headers; the
 * calling thread applies the queues to the tree strictly in layer order.
 * Queues are bounded (RF_SCANQ_LEN headers each), so memory stays small
 * whatever the layer sizes: a worker that gets far ahead just waits.
 */
#include "rootfs_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RF_SCANQ_LEN 1024
#define RF_SCAN_THREADS_MAX 4

struct scanq {
	struct archive_entry *ring[RF_SCANQ_LEN];
	size_t head, count;
	bool done;
	int rc;
	char err[512];
	uint64_t bytes_read; /* compressed bytes consumed, for progress */
};

struct scanner {
	struct rf_build *b;
	struct scanq *q; /* one per layer */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned next_layer;
	bool abort;
};

/* Worker side: waits for room (or an abort), then queues e. */
static bool push(struct scanner *s, struct scanq *q, struct archive_entry *e, uint64_t bytes)
{
	pthread_mutex_lock(&s->mu);
	while (q->count == RF_SCANQ_LEN && !s->abort)
		pthread_cond_wait(&s->cv, &s->mu);
	bool ok = !s->abort;
	if (ok) {
		q->ring[(q->head + q->count) % RF_SCANQ_LEN] = e;
		q->count++;
		q->bytes_read = bytes;
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static void read_layer(struct scanner *s, unsigned i)
{
	struct scanq *q = &s->q[i];
	struct rf_layer l;
	int r = rf_layer_open(&l, s->b->spec->layers[i], i);
	struct archive_entry *e;
	while (r == 0 && (r = rf_layer_next(&l, &e)) > 0) {
		struct archive_entry *c = archive_entry_clone(e);
		if (!c) {
			r = lt_fail("out of memory reading layer %u", i + 1);
			break;
		}
		if (!push(s, q, c, rf_layer_bytes_read(&l))) {
			archive_entry_free(c);
			r = 0; /* aborted: the error is the consumer's */
			break;
		}
		r = 0;
	}
	if (r >= 0)
		r = 0;
	rf_layer_close(&l);
	pthread_mutex_lock(&s->mu);
	q->done = true;
	q->rc = r;
	if (r < 0)
		snprintf(q->err, sizeof(q->err), "%s", lt_errmsg());
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void *worker(void *arg)
{
	struct scanner *s = arg;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		unsigned i = s->next_layer;
		bool stop = s->abort || i >= s->b->spec->n_layers;
		if (!stop)
			s->next_layer++;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			return NULL;
		read_layer(s, i);
	}
}

/* Consumer side: the next header of layer i, NULL at its end (*rc < 0
 * with the error recorded when the worker failed). */
static struct archive_entry *pop(struct scanner *s, unsigned i, int *rc, uint64_t *bytes)
{
	struct scanq *q = &s->q[i];
	struct archive_entry *e = NULL;
	pthread_mutex_lock(&s->mu);
	while (q->count == 0 && !q->done)
		pthread_cond_wait(&s->cv, &s->mu);
	if (q->count) {
		e = q->ring[q->head];
		q->head = (q->head + 1) % RF_SCANQ_LEN;
		q->count--;
		pthread_cond_broadcast(&s->cv);
	}
	*rc = e ? 0 : q->rc;
	*bytes = q->bytes_read;
	if (!e && q->rc < 0)
		lt_fail("%s", q->err);
	pthread_mutex_unlock(&s->mu);
	return e;
}

static int apply_layer(struct scanner *s, unsigned i)
{
	struct rf_build *b = s->b;
	const char *path = b->spec->layers[i];
	char label[16], title[64];
	rf_layer_label(path, label, sizeof(label));
	snprintf(title, sizeof(title), "reading layer %u/%zu %s", i + 1, b->spec->n_layers, label);
	struct stat st;
	int item = lt_progress_add(b->spec->progress, title,
				   stat(path, &st) == 0 ? (uint64_t)st.st_size : 0);
	b->tree.layer_name = label;
	uint32_t n = 0;
	int rc = 0;
	uint64_t bytes;
	struct archive_entry *e;
	while ((e = pop(s, i, &rc, &bytes))) {
		/* The same 1-based numbering rf_layer_next gives pass 2. */
		rc = rf_tree_apply(&b->tree, i, ++n, e);
		archive_entry_free(e);
		if (rc < 0)
			break;
		if ((n & 1023) == 0)
			lt_progress_update(b->spec->progress, item, bytes);
	}
	b->tree.layer_name = NULL;
	if (rc < 0)
		return -1;
	char status[32];
	snprintf(status, sizeof(status), "scanned %u entries", n);
	lt_progress_done(b->spec->progress, item, status);
	return 0;
}

static unsigned thread_count(size_t n_layers)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cpus < 1 ? 1 : (size_t)cpus;
	if (n > RF_SCAN_THREADS_MAX)
		n = RF_SCAN_THREADS_MAX;
	if (n > n_layers)
		n = n_layers;
	return (unsigned)n;
}

int rf_scan_layers(struct rf_build *b)
{
	size_t n_layers = b->spec->n_layers;
	if (!n_layers)
		return 0;
	struct scanner s = {.b = b};
	s.q = lt_calloc(n_layers, sizeof(*s.q));
	if (!s.q)
		return -1;
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	pthread_t th[RF_SCAN_THREADS_MAX];
	unsigned nth = 0, want = thread_count(n_layers);
	int rc = 0;
	for (; nth < want; nth++)
		if (pthread_create(&th[nth], NULL, worker, &s) != 0)
			break;
	if (nth == 0)
		rc = lt_fail("cannot start a layer reader thread");
	for (unsigned i = 0; rc == 0 && i < n_layers; i++)
		rc = apply_layer(&s, i);
	pthread_mutex_lock(&s.mu);
	s.abort = true;
	pthread_cond_broadcast(&s.cv);
	pthread_mutex_unlock(&s.mu);
	for (unsigned t = 0; t < nth; t++)
		pthread_join(th[t], NULL);
	/* Headers queued but never applied (after an error). */
	for (size_t i = 0; i < n_layers; i++)
		for (size_t k = 0; k < s.q[i].count; k++)
			archive_entry_free(s.q[i].ring[(s.q[i].head + k) % RF_SCANQ_LEN]);
	pthread_cond_destroy(&s.cv);
	pthread_mutex_destroy(&s.mu);
	free(s.q);
	return rc;
}
