/* flashsale-burst: a burst of HTTP requests, all in flight at once, over libcurl's multi
 * interface (one connection per request, like N distinct buyers pressing "buy").
 *
 *   flashsale-burst --url http://127.0.0.1:8080 --members N [--product ID] [--path P]
 *                   [--method GET|POST] [--concurrency C] [--json FILE]
 *
 * With --product, each request is POST /api/orders {"product_id", "quantity": 1} with its
 * own member token (sub = burst-<run>-<i>, minted up front from FLASHSALE_JWT_SECRET).
 * Without it, --path (default /healthz) is requested with GET: the trivial endpoint.
 * Prints requests/s, latency percentiles, and outcomes (HTTP status and error code) and
 * writes the same as JSON. --concurrency caps connections in flight (0 = all at once).
 * Progress goes to stderr once a second. */
#include "fs/config.h"
#include "fs/id.h"
#include "fs/jwt.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *body;
    size_t len, cap;
    long status;
    double ms;
    struct curl_slist *headers;
    char *payload;
} req_t;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    req_t *r = ud;
    size_t add = sz * n;
    if (r->len + add + 1 > r->cap) {
        size_t cap = (r->len + add + 1) * 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return 0;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double p)
{
    if (n == 0)
        return 0;
    long i = (long)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
    const char *url = "http://127.0.0.1:8080", *product = NULL, *path = "/healthz",
               *json_out = NULL;
    long members = 1000, concurrency = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--url"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--members"))
            members = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--product"))
            product = argv[i + 1];
        else if (!strcmp(argv[i], "--path"))
            path = argv[i + 1];
        else if (!strcmp(argv[i], "--concurrency"))
            concurrency = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--json"))
            json_out = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (members < 1)
        return 2;
    const char *secret = NULL;
    fs_err err = {0};
    if (product && fs_env_secret("FLASHSALE_JWT_SECRET", FS_JWT_SECRET_MIN, true, &secret, &err)) {
        fprintf(stderr, "flashsale-burst: %s\n", err.msg);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, concurrency);
    req_t *reqs = calloc((size_t)members, sizeof *reqs);
    char run[FS_UUID_STR_LEN + 1];
    fs_uuid7_str(run);
    char full[1024];
    snprintf(full, sizeof full, "%s%s", url, product ? "/api/orders" : path);
    fprintf(stderr, "flashsale-burst: preparing %ld requests to %s\n", members, full);
    for (long i = 0; i < members; i++) {
        req_t *r = &reqs[i];
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, full);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        if (product) {
            char sub[96], *tok = NULL;
            snprintf(sub, sizeof sub, "burst-%.8s-%ld", run + 28, i);
            if (fs_jwt_issue(secret, sub, "member", 3600, &tok, &err)) {
                fprintf(stderr, "flashsale-burst: %s\n", err.msg);
                return 1;
            }
            char h[1024];
            snprintf(h, sizeof h, "Authorization: Bearer %s", tok);
            free(tok);
            r->headers = curl_slist_append(NULL, h);
            r->headers = curl_slist_append(r->headers, "Content-Type: application/json");
            r->payload = NULL;
            if (asprintf(&r->payload, "{\"product_id\":\"%s\",\"quantity\":1}", product) < 0)
                return 1;
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->payload);
        }
        curl_multi_add_handle(multi, e);
    }
    fprintf(stderr, "flashsale-burst: sending\n");
    int64_t t0 = fs_mono_ms(), last = t0;
    int running = 1;
    long done = 0;
    while (running) {
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            req_t *r;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            curl_off_t us = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_TOTAL_TIME_T, &us);
            r->ms = (double)us / 1000.0;
            if (m->data.result == CURLE_OK)
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &r->status);
            curl_multi_remove_handle(multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
            done++;
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
        if (fs_mono_ms() - last >= 1000) {
            last = fs_mono_ms();
            fprintf(stderr, "flashsale-burst: %ld/%ld answered after %.1f s\n", done, members,
                    (last - t0) / 1000.0);
        }
    }
    double wall = (double)(fs_mono_ms() - t0) / 1000.0;
    curl_multi_cleanup(multi);

    double *lat = malloc(sizeof(double) * (size_t)members);
    json_t *outcomes = json_object();
    long n = 0;
    for (long i = 0; i < members; i++) {
        req_t *r = &reqs[i];
        char key[96];
        const char *code = NULL;
        json_t *b = r->body ? json_loads(r->body, 0, NULL) : NULL;
        if (b) {
            code = json_string_value(json_object_get(json_object_get(b, "error"), "code"));
            if (!code)
                code = json_string_value(json_object_get(b, "status"));
        }
        snprintf(key, sizeof key, "%ld %s", r->status, code ? code : "");
        json_object_set_new(outcomes, key,
                            json_integer(json_integer_value(json_object_get(outcomes, key)) + 1));
        json_decref(b);
        if (r->status)
            lat[n++] = r->ms;
        free(r->body);
        free(r->payload);
        curl_slist_free_all(r->headers);
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    json_t *res = json_pack("{s:s,s:I,s:f,s:f,s:{s:f,s:f,s:f,s:f,s:f},s:o}", "url", full,
                            "requests", (json_int_t)members, "seconds", wall, "requests_per_s",
                            members / wall, "latency_ms", "p50", pct(lat, n, 50), "p90",
                            pct(lat, n, 90), "p99", pct(lat, n, 99), "p999", pct(lat, n, 99.9),
                            "max", n ? lat[n - 1] : 0.0, "outcomes", outcomes);
    char *text = json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    if (json_out) {
        FILE *f = fopen(json_out, "w");
        if (f) {
            fputs(text, f);
            fclose(f);
        }
    }
    free(text);
    json_decref(res);
    free(lat);
    free(reqs);
    curl_global_cleanup();
    return 0;
}
