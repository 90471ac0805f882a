/*
 * tests/test_checkpoint.c — saving and restoring models (core/checkpoint.h).
 *
 * Specification:
 *  - save then load into a differently initialised model of the same shape
 *    restores every parameter bit for bit, and the AdamW moments too;
 *  - config.json is a Hugging Face GPT-2 config naming each layer's FFN, the
 *    architecture (gpt or bert) and each layer's attention (global or local,
 *    with the window); only a causal, all-global model is a GPT2LMHeadModel;
 *  - loading into a model of another shape, a file missing a tensor, or one
 *    holding an extra tensor fails with FL_EINVAL and names the tensor;
 *  - optimizer state from another step than the weights is refused.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend.h"
#include "checkpoint.h"
#include "fsutil.h"
#include "optim.h"
#include "safetensors.h"

static const char *const SPECS[] = {"dense", "dense:d_ff=24,activation=relu"};

static fl_model *tiny(int d_model, uint64_t seed) {
    fl_model_config mc = {.vocab_size = 40, .context = 8, .d_model = d_model, .n_layers = 2, .n_heads = 2,
                          .ffn_specs = SPECS, .seed = seed};
    fl_model *m = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, fl_backend_cpu(), &m, &err), &err);
    return m;
}

/* One training step, so the moments are not zero. */
static void train_once(fl_model *m) {
    int32_t x[16], y[16];
    for (int i = 0; i < 16; i++) x[i] = (i * 7) % 40, y[i] = (i * 11 + 3) % 40;
    double loss;
    fl_error err = {0};
    fl_model_zero_grad(m);
    ts_assert_ok(fl_model_forward(m, x, y, 2, 8, 1, 0, &loss, &err), &err);
    ts_assert_ok(fl_model_backward(m, &err), &err);
    fl_adamw opt = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    ts_assert_ok(fl_adamw_step(fl_backend_cpu(), fl_model_params(m), &opt, 1e-2, 1.0f, 1, &err), &err);
}

static void assert_same_tensor(const fl_tensor *a, const fl_tensor *b, const char *name) {
    assert_int_equal(fl_nbytes(a), fl_nbytes(b));
    if (memcmp(a->data, b->data, fl_nbytes(a))) fail_msg("%s differs after the round trip", name);
}

static void test_round_trip_restores_weights_and_moments(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    fl_error err = {0};
    fl_model *a = tiny(16, 1), *b = tiny(16, 2);
    train_once(a);
    ts_assert_ok(fl_checkpoint_save(dir, a, 1, 7, 39, &err), &err);
    int64_t step = 0;
    ts_assert_ok(fl_checkpoint_load(dir, b, 1, &step, &err), &err);
    assert_int_equal(step, 7);
    for (int i = 0; i < fl_model_n_params(a); i++) {
        fl_param_impl *pa = fl_param_impl_of(fl_model_param(a, i)), *pb = fl_param_impl_of(fl_model_param(b, i));
        assert_string_equal(pa->pub.name, pb->pub.name);
        assert_same_tensor(&pa->pub.value, &pb->pub.value, pa->pub.name);
        assert_same_tensor(&pa->m, &pb->m, pa->pub.name);
        assert_same_tensor(&pa->v, &pb->v, pa->pub.name);
    }
    fl_model_free(a);
    fl_model_free(b);
    ts_rmtree(dir);
    free(dir);
}

static void test_config_json_is_gpt2(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), path[4096];
    fl_error err = {0};
    fl_model *a = tiny(16, 1);
    ts_assert_ok(fl_checkpoint_save(dir, a, 0, 0, 39, &err), &err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j = ts_read_json(path);
    assert_string_equal(cJSON_GetObjectItem(j, "model_type")->valuestring, "gpt2");
    assert_int_equal(cJSON_GetObjectItem(j, "n_embd")->valueint, 16);
    assert_int_equal(cJSON_GetObjectItem(j, "n_layer")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(j, "eos_token_id")->valueint, 39);
    cJSON *ffn = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ffnlab"), "ffn");
    assert_string_equal(cJSON_GetArrayItem(ffn, 1)->valuestring, SPECS[1]);
    /* the weights file uses GPT-2 names and layouts */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fl_st_file *f = NULL;
    ts_assert_ok(fl_safetensors_open(path, &f, &err), &err);
    const fl_st_entry *e = fl_safetensors_find(f, "transformer.h.1.attn.c_attn.weight");
    assert_non_null(e);
    assert_int_equal(e->shape[0], 16);
    assert_int_equal(e->shape[1], 48);
    assert_non_null(fl_safetensors_find(f, "transformer.h.1.mlp.c_fc.weight"));
    fl_safetensors_close(f);
    cJSON_Delete(j);
    fl_model_free(a);
    ts_rmtree(dir);
    free(dir);
}

/* config.json of a model saved with eot 39. */
static cJSON *saved_config(fl_model *m) {
    char *dir = ts_tmpdir(), path[4096];
    fl_error err = {0};
    ts_assert_ok(fl_checkpoint_save(dir, m, 0, 0, 39, &err), &err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j = ts_read_json(path);
    ts_rmtree(dir);
    free(dir);
    return j;
}

static const char *attention_of(const cJSON *j, int layer) {
    const cJSON *kinds = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ffnlab"), "attention_layers");
    assert_int_equal(cJSON_GetArraySize(kinds), 2);
    return cJSON_GetArrayItem(kinds, layer)->valuestring;
}

/* The ffnlab block says the architecture and each layer's attention; only a
   causal model with global attention calls itself a GPT2LMHeadModel (tools
   would run an encoder or a local layer as something it is not). */
static void test_config_json_says_arch_and_attention(void **state) {
    (void)state;
    fl_model *dec = tiny(16, 1);
    cJSON *j = saved_config(dec);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring, "GPT2LMHeadModel");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ffnlab"), "arch")->valuestring, "gpt");
    assert_string_equal(attention_of(j, 0), "global");
    assert_string_equal(attention_of(j, 1), "global");
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ffnlab"), "window_size"));
    cJSON_Delete(j);
    fl_model_free(dec);

    fl_model_config mc = {.vocab_size = 40, .context = 8, .d_model = 16, .n_layers = 2, .n_heads = 2,
                          .ffn_specs = SPECS, .seed = 1, .arch = FL_ARCH_BERT, .pad_token = 37,
                          .local_layers = 2, .window = 3};
    fl_model *enc = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_model_create(&mc, fl_backend_cpu(), &enc, &err), &err);
    j = saved_config(enc);
    assert_null(cJSON_GetObjectItem(j, "architectures"));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "is_decoder")));
    assert_int_equal(cJSON_GetObjectItem(j, "pad_token_id")->valueint, 37);
    assert_null(cJSON_GetObjectItem(j, "eos_token_id")); /* <|endoftext|> is no encoder's end token */
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ffnlab"), "arch")->valuestring, "bert");
    assert_string_equal(attention_of(j, 0), "global");
    assert_string_equal(attention_of(j, 1), "local");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "ffnlab"), "window_size")->valueint, 3);
    cJSON_Delete(j);
    fl_model_free(enc);
}

static void test_wrong_shape_is_refused(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    fl_error err = {0};
    fl_model *a = tiny(16, 1), *c = tiny(32, 1);
    ts_assert_ok(fl_checkpoint_save(dir, a, 0, 0, -1, &err), &err);
    assert_int_equal(fl_checkpoint_load(dir, c, 0, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "transformer.wte.weight"));
    assert_non_null(strstr(err.msg, "the model expects [40,32]"));
    fl_model_free(a);
    fl_model_free(c);
    ts_rmtree(dir);
    free(dir);
}

/* Rewrites dir/model.safetensors keeping all tensors but `drop`, adding `extra`. */
static void rewrite(const char *dir, const char *drop, const char *extra) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fl_st_file *f = NULL;
    fl_error err = {0};
    ts_assert_ok(fl_safetensors_open(path, &f, &err), &err);
    size_t n = fl_safetensors_count(f), k = 0;
    fl_st_entry *es = calloc(n + 1, sizeof *es);
    for (size_t i = 0; i < n; i++)
        if (!drop || strcmp(fl_safetensors_at(f, i)->name, drop)) es[k++] = *fl_safetensors_at(f, i);
    static const float one = 1;
    if (extra) es[k++] = (fl_st_entry){.name = extra, .dtype = FL_F32, .ndim = 1, .shape = {1}, .data = &one};
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/rewritten.safetensors", dir);
    const char *meta[] = {"step", "0", NULL};
    ts_assert_ok(fl_safetensors_write(tmp, es, k, meta, &err), &err);
    fl_safetensors_close(f);
    assert_int_equal(rename(tmp, path), 0);
    free(es);
}

static void test_missing_or_extra_tensor_is_refused(void **state) {
    (void)state;
    char *dir = ts_tmpdir();
    fl_error err = {0};
    fl_model *a = tiny(16, 1);
    ts_assert_ok(fl_checkpoint_save(dir, a, 0, 0, -1, &err), &err);
    rewrite(dir, "transformer.h.0.ln_2.bias", NULL);
    assert_int_equal(fl_checkpoint_load(dir, a, 0, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "transformer.h.0.ln_2.bias is missing"));
    ts_assert_ok(fl_checkpoint_save(dir, a, 0, 0, -1, &err), &err);
    rewrite(dir, NULL, "transformer.h.9.stray");
    assert_int_equal(fl_checkpoint_load(dir, a, 0, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "a different model"));
    fl_model_free(a);
    ts_rmtree(dir);
    free(dir);
}

static void test_optimizer_from_another_step_is_refused(void **state) {
    (void)state;
    char *dir = ts_tmpdir(), *other = ts_tmpdir(), from[4200], to[4200];
    fl_error err = {0};
    fl_model *a = tiny(16, 1);
    ts_assert_ok(fl_checkpoint_save(dir, a, 1, 5, -1, &err), &err);
    ts_assert_ok(fl_checkpoint_save(other, a, 1, 6, -1, &err), &err);
    snprintf(from, sizeof from, "%s/optimizer.safetensors", other);
    snprintf(to, sizeof to, "%s/optimizer.safetensors", dir);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(fl_checkpoint_load(dir, a, 1, NULL, &err), FL_EINVAL);
    assert_non_null(strstr(err.msg, "step 6"));
    fl_model_free(a);
    ts_rmtree(dir);
    ts_rmtree(other);
    free(dir);
    free(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_restores_weights_and_moments),
        cmocka_unit_test(test_config_json_is_gpt2),
        cmocka_unit_test(test_config_json_says_arch_and_attention),
        cmocka_unit_test(test_wrong_shape_is_refused),
        cmocka_unit_test(test_missing_or_extra_tensor_is_refused),
        cmocka_unit_test(test_optimizer_from_another_step_is_refused),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
