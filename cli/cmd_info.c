/* cmd_info.c: `stx info MODEL [--input-shape N,C,T,H,W]`. */
#include "cli.h"

#include <string.h>

static void shape_str(const int64_t *d, int r, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < r && k < n; i++) {
        if (d[i] >= 0)
            k += (size_t)snprintf(buf + k, n - k, i ? ",%lld" : "%lld", (long long)d[i]);
        else
            k += (size_t)snprintf(buf + k, n - k, i ? ",?" : "?");
    }
    if (k < n) snprintf(buf + k, n - k, "]");
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    int64_t shape[STX_MAX_RANK];
    int rank = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: stx info MODEL [--input-shape N,C,T,H,W]\n"
                   "  Prints inputs, outputs, opset, parameters, and for a concrete input shape\n"
                   "  (the model's own when fully known, with a dynamic batch taken as 1) the\n"
                   "  multiply-adds and the module scopes with their output tensors and shapes.\n");
            return 0;
        } else if (strcmp(a, "--input-shape") == 0) {
            if (++i >= argc || !cli_parse_shape(argv[i], shape, &rank))
                return cli_fail("--input-shape needs a list like 1,3,16,112,112");
        } else if (a[0] == '-' && a[1]) {
            return cli_fail("info: unknown option '%s' (try 'stx info --help')", a);
        } else if (!model) {
            model = a;
        } else {
            return cli_fail("info: unexpected argument '%s'", a);
        }
    }
    if (!model) return cli_fail("usage: stx info MODEL [--input-shape N,C,T,H,W]");
    stx_context *ctx = NULL;
    stx_model *m = NULL;
    stx_session *s = NULL;
    int rc = cli_context(0, &ctx);
    if (rc) return rc;
    if ((rc = cli_load_model(ctx, model, &m))) goto done;
    char buf[256];
    printf("model:      %s\n", model);
    printf("producer:   %s\n", stx_model_producer(m));
    printf("opset:      %d\n", stx_model_opset(m));
    printf("nodes:      %d\n", stx_model_num_nodes(m));
    printf("parameters: %lld\n", (long long)stx_model_num_parameters(m));
    for (int i = 0; i < stx_model_num_inputs(m); i++) {
        stx_dtype dt;
        int64_t d[STX_MAX_RANK];
        int r;
        stx_model_input_info(m, i, &dt, d, &r);
        shape_str(d, r, buf, sizeof buf);
        printf("input:      %s %s %s\n", stx_model_input_name(m, i), stx_dtype_name(dt), buf);
        if (i == 0 && rank < 0) {
            bool known = r > 0;
            for (int k = 1; k < r; k++) known &= d[k] > 0;
            if (known) {
                rank = r;
                for (int k = 0; k < r; k++) shape[k] = d[k] > 0 ? d[k] : 1;
            }
        }
    }
    for (int i = 0; i < stx_model_num_outputs(m); i++) {
        stx_dtype dt;
        int64_t d[STX_MAX_RANK];
        int r;
        stx_model_output_info(m, i, &dt, d, &r);
        shape_str(d, r, buf, sizeof buf);
        printf("output:     %s %s %s\n", stx_model_output_name(m, i), stx_dtype_name(dt), buf);
    }
    if (rank > 0) {
        if (stx_session_create(m, NULL, shape, rank, &s) != STX_OK) {
            rc = cli_fail("%s", stx_context_last_error(ctx));
            goto done;
        }
        shape_str(shape, rank, buf, sizeof buf);
        int64_t macs = stx_session_macs(s);
        printf("for input:  %s\n", buf);
        printf("MACs:       %lld (%.3f GMAC)\n", (long long)macs, (double)macs * 1e-9);
    } else {
        printf("(give --input-shape for MACs and module shapes)\n");
    }
    int nm = stx_model_num_modules(m);
    if (nm > 0) {
        printf("\nmodules (%d):\n", nm);
        printf("  %-36s %-40s %s\n", "module", "output tensor", "shape");
        for (int i = 0; i < nm; i++) {
            const char *name = stx_model_module_name(m, i), *t = stx_model_module_output(m, i);
            int64_t d[STX_MAX_RANK];
            int r;
            buf[0] = '\0';
            if (s && stx_session_tensor_shape(s, t, d, &r) == STX_OK)
                shape_str(d, r, buf, sizeof buf);
            printf("  %-36s %-40s %s\n", name, t, buf);
        }
    }
done:
    stx_session_free(s);
    stx_model_free(m);
    stx_context_free(ctx);
    return rc;
}
