/* st_tree.c: a parser building a syntax tree and dropping it.
 *
 * Each round "parses" a document: it builds a tree of nodes (48 bytes),
 * each with a token string (2..40 bytes) and a child array that grows by
 * realloc (doubling) as children are added, to a random shape of about
 * 20000 nodes.  Then it walks the tree (a checksum over the tokens) and
 * frees it depth first, as a compiler or a JSON parser drops a document.
 * Allocation is bursty and frees come in the reverse of a tree order.
 */
#include "bench.h"

typedef struct node_s {
  struct node_s **kids;   /* child array, grown by realloc */
  char *token;
  uint32_t nkids, cap;
  uint32_t kind, len;
} node_t;

static node_t *node_new(bench_rng_t *r) {
  node_t *n = bench_xmalloc(sizeof *n);
  n->kids = NULL;
  n->nkids = n->cap = 0;
  n->kind = (uint32_t)(bench_rand(r) & 15);
  n->len = (uint32_t)bench_log_size(r, 2, 40);
  n->token = bench_xmalloc(n->len + 1);
  memset(n->token, 'a' + (int)n->kind, n->len);
  n->token[n->len] = 0;
  return n;
}

static void node_add(node_t *parent, node_t *kid) {
  if (parent->nkids == parent->cap) {
    parent->cap = parent->cap ? parent->cap * 2 : 2;
    node_t **k = realloc(parent->kids, parent->cap * sizeof *k);
    if (k == NULL) bench_fail("out of memory");
    parent->kids = k;
  }
  parent->kids[parent->nkids++] = kid;
}

static uint64_t walk(const node_t *n) {
  if (strlen(n->token) != n->len || n->token[0] != 'a' + (int)n->kind)
    bench_fail("a token changed while the tree was live (heap corruption)");
  uint64_t h = n->len * 131u + n->kind;
  for (uint32_t i = 0; i < n->nkids; i++) h = h * 31 + walk(n->kids[i]);
  return h;
}

static void drop(node_t *n) {
  for (uint32_t i = 0; i < n->nkids; i++) drop(n->kids[i]);
  free(n->kids);
  free(n->token);
  free(n);
}

int main(void) {
  bench_start("st_tree");
  int rounds = (int)(200 * bench_env_num("BENCH_SCALE", 1));
  if (rounds < 1) rounds = 1;
  bench_rng_t r = { 11 };
  uint64_t sum = 0, nodes = 0;
  node_t *stack[64];
  for (int round = 0; round < rounds; round++) {
    node_t *root = node_new(&r);
    int depth = 0;
    stack[0] = root;
    long target = 15000 + (long)(bench_rand(&r) % 10000);
    for (long i = 0; i < target; i++) {
      node_t *n = node_new(&r);
      node_add(stack[depth], n);
      uint64_t x = bench_rand(&r) & 7;
      if (x < 3 && depth < 63) stack[++depth] = n;   /* open a subtree */
      else if (x >= 6 && depth > 0) depth--;          /* close one */
    }
    nodes += (uint64_t)target + 1;
    sum += walk(root);
    drop(root);
  }
  bench_end(nodes, sum);
  return 0;
}
