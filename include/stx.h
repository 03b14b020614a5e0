/*
 * stx.h: spatio-temporal explanations for video neural networks.
 *
 * The one public header of libstx. Everything here is C11, prefixed `stx_`/`STX_`.
 *
 * Usage (forward pass of an ONNX video model):
 *
 *     stx_context *ctx;  stx_model *m;  stx_session *s;  stx_tensor *x, *y;
 *     stx_context_create(NULL, &ctx);
 *     if (stx_model_load(ctx, "r3d.onnx", NULL, &m) != STX_OK)
 *         fprintf(stderr, "%s\n", stx_context_last_error(ctx));
 *     stx_tensor_load_npy(ctx, "clip.npy", &x);
 *     stx_session_create(m, NULL, stx_tensor_shape(x), stx_tensor_rank(x), &s);
 *     stx_session_run(s, x, &y);          // y is owned by the session
 *     ...
 *     stx_tensor_free(x); stx_session_free(s); stx_model_free(m); stx_context_free(ctx);
 *
 * Conventions
 * - Every fallible function returns an `stx_status`: STX_OK (0) or a negative error code.
 *   Results come back through trailing out-parameters.
 * - The detailed message for the last failure is kept on the handle the call was made on:
 *   `stx_context_last_error` (context, model loading, tensors) or `stx_session_last_error`.
 *   The string is owned by the handle and valid until its next failing call.
 * - Every create or load function has one matching free function, which accepts NULL.
 * - Options structs come from the ..._default() getters; set the fields you need.
 * - Thread safety: a model may be shared by several threads once loaded; a session (run state)
 *   must not be used by two threads at once. A context may be shared if only used to create
 *   models and sessions from one thread at a time.
 * - The library never prints and never exits the process on bad input.
 */
#ifndef STX_H
#define STX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define STX_API
#elif defined(__GNUC__)
#define STX_API __attribute__((visibility("default")))
#else
#define STX_API
#endif

#define STX_VERSION_MAJOR 0
#define STX_VERSION_MINOR 1
#define STX_VERSION_PATCH 0

/* Maximum tensor rank handled anywhere in stx. */
#define STX_MAX_RANK 8

/* Status codes: X(name, value, description). Append only. */
#define STX_STATUS_MAP(X)                                                                          \
    X(OK, 0, "success")                                                                            \
    X(E_INVALID, -1, "invalid argument")                                                           \
    X(E_NOMEM, -2, "out of memory")                                                                \
    X(E_IO, -3, "input/output error")                                                              \
    X(E_FORMAT, -4, "malformed file")                                                              \
    X(E_UNSUPPORTED, -5, "unsupported operator or feature")                                        \
    X(E_SHAPE, -6, "shape mismatch")                                                               \
    X(E_NOTFOUND, -7, "not found")                                                                 \
    X(E_CANCELLED, -8, "cancelled")                                                                \
    X(E_INTERNAL, -9, "internal error")                                                            \
    X(E_NUMERIC, -10, "non-finite value")

typedef enum {
#define STX__STATUS_ENUM(name, val, desc) STX_##name = val,
    STX_STATUS_MAP(STX__STATUS_ENUM)
#undef STX__STATUS_ENUM
} stx_status;

/* "STX_E_SHAPE" etc. and a short English description. Never NULL. */
STX_API const char *stx_status_name(stx_status s);
STX_API const char *stx_status_string(stx_status s);
STX_API const char *stx_version(void);

/* Element types; the values are ONNX's TensorProto.DataType codes. */
typedef enum {
    STX_DTYPE_UNDEFINED = 0,
    STX_DTYPE_FLOAT = 1,
    STX_DTYPE_UINT8 = 2,
    STX_DTYPE_INT8 = 3,
    STX_DTYPE_INT32 = 6,
    STX_DTYPE_INT64 = 7,
    STX_DTYPE_BOOL = 9,
    STX_DTYPE_DOUBLE = 11
} stx_dtype;

STX_API const char *stx_dtype_name(stx_dtype t);
STX_API size_t stx_dtype_size(stx_dtype t);

/* ---------------------------------------------------------------------------------------------
 * Context: allocator hooks, thread count, last error message.
 */
typedef struct stx_context stx_context;

typedef struct stx_allocator {
    void *(*alloc)(void *user, size_t size); /* must return 64-byte aligned memory or NULL */
    void (*free)(void *user, void *ptr);
    void *user;
} stx_allocator;

typedef struct stx_context_options {
    size_t size;             /* sizeof(stx_context_options), set by the default getter */
    int num_threads;         /* 0: STX_NUM_THREADS from the environment, else all cores */
    stx_allocator allocator; /* alloc == NULL: the system allocator */
} stx_context_options;

STX_API stx_context_options stx_context_options_default(void);
STX_API stx_status stx_context_create(const stx_context_options *opt, stx_context **out);
STX_API void stx_context_free(stx_context *ctx);
STX_API const char *stx_context_last_error(const stx_context *ctx);
STX_API int stx_context_num_threads(const stx_context *ctx);

/* ---------------------------------------------------------------------------------------------
 * Tensors: dense, row-major, up to STX_MAX_RANK dimensions.
 */
typedef struct stx_tensor stx_tensor;

STX_API stx_status stx_tensor_create(stx_context *ctx, stx_dtype dtype, const int64_t *shape,
                                     int rank, stx_tensor **out);
STX_API void stx_tensor_free(stx_tensor *t);
STX_API stx_dtype stx_tensor_dtype(const stx_tensor *t);
STX_API int stx_tensor_rank(const stx_tensor *t);
STX_API const int64_t *stx_tensor_shape(const stx_tensor *t);
STX_API int64_t stx_tensor_numel(const stx_tensor *t);
STX_API void *stx_tensor_data(stx_tensor *t);
STX_API const void *stx_tensor_data_const(const stx_tensor *t);
/* Gives t a new shape with the same number of elements (the data is not moved). STX_E_SHAPE
 * when the element counts differ. */
STX_API stx_status stx_tensor_reshape(stx_tensor *t, const int64_t *shape, int rank);

/* .npy files (format versions 1-3, little-endian, C order; float32/float64/int64/int32/bool/
 * uint8/int8). Writing is atomic: a temporary file beside the target, then rename. */
STX_API stx_status stx_tensor_load_npy(stx_context *ctx, const char *path, stx_tensor **out);
STX_API stx_status stx_tensor_save_npy(stx_context *ctx, const stx_tensor *t, const char *path);

/* ---------------------------------------------------------------------------------------------
 * Models: an ONNX graph and its weights, immutable once loaded, shareable between threads.
 */
typedef struct stx_model stx_model;

typedef struct stx_model_options {
    size_t size;
    int reserved;
} stx_model_options;

STX_API stx_model_options stx_model_options_default(void);
/* Loads an ONNX model (external-data files are looked up beside it). Fails with a message
 * naming the node and attribute when an operator or attribute is not supported. */
STX_API stx_status stx_model_load(stx_context *ctx, const char *path, const stx_model_options *opt,
                                  stx_model **out);
STX_API void stx_model_free(stx_model *m);

STX_API int stx_model_opset(const stx_model *m);
STX_API int stx_model_num_inputs(const stx_model *m);
STX_API int stx_model_num_outputs(const stx_model *m);
/* Name, dtype and declared shape of a graph input/output (dims < 0: dynamic). */
STX_API const char *stx_model_input_name(const stx_model *m, int i);
STX_API const char *stx_model_output_name(const stx_model *m, int i);
STX_API stx_status stx_model_input_info(const stx_model *m, int i, stx_dtype *dtype,
                                        int64_t shape[STX_MAX_RANK], int *rank);
STX_API stx_status stx_model_output_info(const stx_model *m, int i, stx_dtype *dtype,
                                         int64_t shape[STX_MAX_RANK], int *rank);
STX_API int64_t stx_model_num_parameters(const stx_model *m);
STX_API int stx_model_num_nodes(const stx_model *m);
/* metadata_props: NULL when the key is absent. */
STX_API const char *stx_model_metadata(const stx_model *m, const char *key);
STX_API const char *stx_model_producer(const stx_model *m);

/* Module scopes recovered from node names (`/layer4/layer4.1/relu/Relu` -> `layer4`,
 * `layer4.1`, `layer4.1.relu`). A module's output is the output of its last node. */
STX_API int stx_model_num_modules(const stx_model *m);
STX_API const char *stx_model_module_name(const stx_model *m, int i);
STX_API const char *stx_model_module_output(const stx_model *m, int i);
/* Resolves an ONNX tensor name or a module path to a tensor name (owned by the model). */
STX_API stx_status stx_model_resolve_tensor(const stx_model *m, const char *name_or_module,
                                            const char **tensor_name);

/* ---------------------------------------------------------------------------------------------
 * Model facts: what a model says about itself in its `stx.*` metadata_props.
 *
 * Keys (all optional; stx's model zoo writes them, older exports only stx.layout):
 *   stx.name, stx.task ("clip" | "frame" | "frame-features"), stx.classes ("a,b,c"),
 *   stx.layout ("NCTHW" | "NTCHW" | "NCHW" | "NCT"), stx.mean and stx.std ("0.45,0.45,0.45",
 *   for pixels scaled to [0,1]), stx.clip_length (frames, 0 = any), stx.frame_size ("64x64",
 *   HxW), stx.target_layer (module path or tensor name), stx.token_grid ("8x4x4", T x H x W of
 *   a transformer's tokens), stx.output (the graph output holding the class scores).
 * The facts are parsed once, at load. A malformed value does not fail the load (the model still
 * runs): that key is left absent from the facts and its message is kept for the calls below.
 */
typedef struct stx_model_facts {
    size_t size;              /* sizeof(stx_model_facts), set by stx_model_facts_get */
    const char *name;         /* stx.name */
    const char *task;         /* stx.task: "clip", "frame" (one prediction per frame, outputs
                                 (N, K, T)) or "frame-features" (a per-frame feature extractor) */
    const char *layout;       /* stx.layout: the first input's axes, "NCTHW", "NTCHW", "NCHW"
                                 (single frames) or "NCT" (a sequence of feature vectors);
                                 checked against the input's rank when that is declared */
    const char *target_layer; /* stx.target_layer: a tensor or module of the model (checked) */
    const char *output;       /* stx.output: a graph output's name (checked); NULL: output 0 */
    int num_classes;          /* stx.classes: number of class names (distinct, non-empty) */
    const char *const *class_names; /* num_classes names, in class-index order */
    /* stx.mean and stx.std: x = (v / 255 - mean) / std per RGB channel. has_normalization is 1
     * when both keys parsed; each array is also filled alone when only its own key parsed. */
    int has_normalization;
    float mean[3], std[3];
    int clip_length;               /* stx.clip_length: frames per clip; 0: unknown or any */
    int frame_height, frame_width; /* stx.frame_size; 0: unknown */
    int token_grid[3];             /* stx.token_grid: T, H, W of the token grid; 0s when absent */
} stx_model_facts;

/* Fills *out with the model's facts. Every string (and the class-name array) is owned by the
 * model. When some key was malformed, *out is still filled (that key absent) and the first
 * malformed key's message is returned as STX_E_FORMAT on the context's error, for example
 * "model.onnx: metadata 'stx.mean' = 'a,b': expected 3 comma-separated numbers". */
STX_API stx_status stx_model_facts_get(const stx_model *m, stx_model_facts *out);
/* The i-th malformed metadata key's message (NULL past the last one), and its key
 * ("stx.mean") in *key when key != NULL. Lets a caller that overrides a key ignore its error. */
STX_API const char *stx_model_facts_error(const stx_model *m, int i, const char **key);
/* Index of a class name in stx.classes; -1 when unknown (or the model names no classes). */
STX_API int stx_model_class_index(const stx_model *m, const char *name);

/* ---------------------------------------------------------------------------------------------
 * Video preprocessing: uint8 frames to a model's float32 input.
 */
typedef struct stx_preprocess {
    size_t size;           /* sizeof(stx_preprocess), set by the default getter */
    const char *layout;    /* output axes: "NCTHW" (default), "NTCHW", or "NCHW" (frames become the
                              batch); NULL: "NCTHW" */
    int normalize;         /* 1: x = (v / 255 - mean) / std per channel; 0 (default): x = v / 255 */
    float mean[3], std[3]; /* RGB; default 0 and 1; std must be > 0 when normalize is set */
    int height, width;     /* resize every frame to this size first (bilinear); 0: keep */
    /* Resize-and-crop, as torchvision's Resize(short) + CenterCrop(crop) (used when height and
     * width are 0): scale so that the short side is short_side (0: keep), then cut the centred
     * crop_height x crop_width window (0: no crop). */
    int short_side;
    int crop_height, crop_width;
    int bgr; /* 1: the model takes BGR (channel 0 = blue); mean/std are then in BGR order */
} stx_preprocess;

/* Where a preprocessed frame (the model's H' x W') came from in the source frame: resized to
 * resized_h x resized_w, then the window at (crop_y, crop_x) of size out_h x out_w cut out. */
typedef struct stx_frame_geometry {
    int src_h, src_w;
    int resized_h, resized_w;
    int crop_y, crop_x;
    int out_h, out_w;
} stx_frame_geometry;

/* The geometry p gives to src_h x src_w frames, as torchvision's Resize(short_side) and
 * CenterCrop do it: the long side becomes int(short_side * long / short) (truncated), the crop
 * offsets round((resized - crop) / 2) with Python's rounding (halves to even). height or width,
 * when set, resize to exactly that size (0: that side kept) with no crop. Fails with STX_E_SHAPE
 * when the crop is larger than the resized frame. */
STX_API stx_status stx_preprocess_geometry(const stx_preprocess *p, int src_h, int src_w,
                                           stx_frame_geometry *out);
/* Named presets: "kinetics" (mean 0.43216,0.394666,0.37645, std 0.22803,0.22145,0.216989,
 * short side 128, crop 112: torchvision's video models), "imagenet" (mean 0.485,0.456,0.406, std
 * 0.229,0.224,0.225, short side 256, crop 224). Fills normalisation, short side and crop. */
STX_API stx_status stx_preprocess_preset(const char *name, stx_preprocess *p);

STX_API stx_preprocess stx_preprocess_default(void);
/* Fills layout, normalisation and frame size from the model's facts, leaving *p's values where
 * a fact is absent. On malformed metadata it fills what parsed and returns that error (as
 * stx_model_facts_get does). p->layout then points into the model. */
STX_API stx_status stx_preprocess_from_model(const stx_model *m, stx_preprocess *p);
/* frames: uint8 (T, H, W, C) or (N, T, H, W, C), C = 3 (RGB) or 1 (grey, replicated to 3).
 * *out (a new float32 tensor, freed by the caller) is, with H', W' the resized frame size:
 *   NCTHW -> (N, 3, T, H', W');  NTCHW -> (N, T, 3, H', W');  NCHW -> (N*T, 3, H', W').
 * With short_side or a crop: H' x W' = the geometry's out_h x out_w (the resize computes only the
 * pixels inside the crop). Without resizing the values equal numpy's float32 `x =
 * v.astype(np.float32) / np.float32(255); x = (x - mean) / std` bit for bit. Resizing is bilinear
 * on v / 255 (before normalisation) with half-pixel centres, as
 * torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=False): the
 * source coordinate of output pixel d is (d + 0.5) * in / out - 0.5, clamped at 0, and the
 * neighbour index is clamped to the last pixel. */
STX_API stx_status stx_frames_to_input(stx_context *ctx, const stx_tensor *frames,
                                       const stx_preprocess *p, stx_tensor **out);

/* ---------------------------------------------------------------------------------------------
 * Video sources: a video file (any container and codec FFmpeg's libraries decode), a folder of
 * PNG/JPEG frames (sorted by name), or a uint8 .npy holding frames (T, H, W, 3) or (T, H, W).
 * Frames come out as uint8 RGB (n, H, W, 3). Errors are kept on the context. FFmpeg's own log is
 * switched off (av_log_set_level(AV_LOG_QUIET), process-wide) when stx opens or writes a video.
 */
typedef struct stx_video stx_video;

typedef struct stx_video_info {
    size_t size;
    const char *kind;   /* "video", "images" or "npy" */
    const char *format; /* container ("mov,mp4,m4a,3gp,3g2,mj2"), "png"/"jpeg" folder, "npy" */
    const char *codec;  /* "h264", "mpeg4", ...; "png"/"mjpeg" for folders, "raw" for .npy */
    int width, height;
    int64_t num_frames; /* exact: a video's packets counted by demuxing at open */
    double fps;         /* frames per second; 0 when unknown (folders, .npy) */
} stx_video_info;

STX_API stx_status stx_video_open(stx_context *ctx, const char *path, stx_video **out);
/* A video file held in memory (any container and codec FFmpeg's libraries decode, read through a
 * custom AVIOContext; nothing else is opened, no playlist may reach a file or the network). The
 * bytes are borrowed, not copied: data must stay valid and unchanged until stx_video_close. name
 * (may be NULL: "<memory>") names the source in messages. Frames larger than 64 Mpixels, or 32768
 * on a side, are refused with STX_E_UNSUPPORTED (as by stx_video_open). */
STX_API stx_status stx_video_open_memory(stx_context *ctx, const void *data, size_t size,
                                         const char *name, stx_video **out);
STX_API void stx_video_close(stx_video *v);
STX_API stx_status stx_video_get_info(const stx_video *v, stx_video_info *out);
/* Reads the frames with the given indices (non-decreasing, each < num_frames) into *out, a new
 * uint8 tensor (n, H, W, 3) freed by the caller. Decoding streams forward: only the frames asked
 * for are kept, and the frames of the previous call stay cached, so that overlapping sliding
 * windows never decode a frame twice. Asking for a frame before the cached ones rewinds (the
 * file is reopened). A frame that cannot be decoded (truncated or corrupt file) fails with
 * STX_E_FORMAT naming the file and frame index (at open when demuxing already shows it). */
STX_API stx_status stx_video_read(stx_video *v, const int64_t *indices, int n, stx_tensor **out);

/* Clip sampling over a video of num_frames frames. */
typedef struct stx_sampling {
    size_t size;
    int clip_len;          /* frames per clip (default 16) */
    int frame_stride;      /* step between sampled frames (default 1) */
    int64_t start;         /* first frame (default 0) */
    int uniform;           /* 1: clip_len frames spread evenly over the whole video (start and
                              stride ignored): frame i = floor((i + 0.5) * num_frames / clip_len) */
    int windows;           /* 1: sliding windows covering the video from start */
    int64_t window_stride; /* frames between window starts; 0: clip_len * frame_stride (no
                              overlap) */
} stx_sampling;

STX_API stx_sampling stx_sampling_default(void);
/* Number of clips the sampling gives (1 unless windows; the last window is moved back to end at
 * the last frame so that every frame from start on is covered). Fails with STX_E_SHAPE when the
 * video is too short for one clip; uniform sampling of a video shorter than clip_len repeats
 * frames instead. */
STX_API stx_status stx_sampling_count(const stx_sampling *s, int64_t num_frames, int64_t *count);
/* The clip_len frame indices of clip k. */
STX_API stx_status stx_sampling_indices(const stx_sampling *s, int64_t num_frames, int64_t k,
                                        int64_t *indices);

/* ---------------------------------------------------------------------------------------------
 * Rendering: colour maps, overlays at the source resolution, image and video writers.
 * Every writer writes a temporary file beside the target and renames it: no half-written file.
 */
typedef enum {
    STX_CMAP_JET = 0,      /* matplotlib's jet (the peers' default) */
    STX_CMAP_TURBO = 1,    /* Google's turbo */
    STX_CMAP_INFERNO = 2,  /* matplotlib's inferno */
    STX_CMAP_VIRIDIS = 3,  /* matplotlib's viridis */
    STX_CMAP_DIVERGING = 4 /* blue - white - red (matplotlib's bwr) for signed maps: 0 is white */
} stx_colormap;

/* "jet", "turbo", "inferno", "viridis", "diverging" (also "bwr"); -1 when unknown. */
STX_API int stx_colormap_from_name(const char *name);
/* The name of a colour map; "unknown" for a value outside the enum. */
STX_API const char *stx_colormap_name(stx_colormap c);
/* RGB of value v in [0, 1] (clamped; NaN, or an unknown map, gives black). Each map is a
 * 256-entry table and v picks entry int(v * 256) (1 picks the last): exactly matplotlib's
 * cmap(v, bytes=True) for every float32 v. */
STX_API void stx_colormap_rgb(stx_colormap c, float v, uint8_t rgb[3]);

typedef struct stx_render_options {
    size_t size;
    stx_colormap colormap; /* default jet */
    float alpha;           /* weight of the heat map in the blend (default 0.5): out = (1 - alpha)
                            * frame + alpha * colour */
    int per_frame;         /* 1: normalise each frame on its own; 0 (default): the whole clip */
    int signed_map;        /* 1: map [-m, m] to [0, 1] with m = max |value| (use with the
                              diverging map); 0 (default): min-max to [0, 1] */
    float dim;             /* brightness of source pixels outside the model's crop (default 0.35) */
    /* 1: normalise with the fixed range [range_lo, range_hi] instead of the map's own minimum and
     * maximum (signed: m = max(|range_lo|, |range_hi|)); per_frame is then ignored. Renders a long
     * video chunk by chunk on one scale, or several maps on a common scale. Default 0. */
    int use_range;
    float range_lo, range_hi;
} stx_render_options;

/* Options may be NULL (the defaults); otherwise size must be sizeof(stx_render_options) (start
 * from the default getter) and alpha and dim lie in [0, 1], else STX_E_INVALID. */
STX_API stx_render_options stx_render_options_default(void);
/* Normalises map (T, h, w) float32 to [0, 1] as o says (over the clip or per frame) into the
 * new tensor *out: (v - min) / (max - min), a constant map giving 0s; signed: 0.5 + 0.5 * v / m,
 * an all-zero map giving 0.5s. A NaN or infinite value is STX_E_NUMERIC naming its [t, y, x].
 * Use: normalise at the model's resolution, then unmap, then overlay. */
STX_API stx_status stx_render_normalize(stx_context *ctx, const stx_tensor *map,
                                        const stx_render_options *o, stx_tensor **out);
/* Carries a map (T, out_h, out_w) at the model's input resolution back to source frames of
 * g->src_h x g->src_w: each source pixel's centre goes through the resize and the crop (half-pixel
 * centres) and samples the map bilinearly; pixels outside the crop get NaN. *out is a new float32
 * (T, src_h, src_w) tensor. Per axis (rows shown): source row y is at p = (y + 0.5) * resized_h /
 * src_h in the resized frame; it is inside the crop when crop_y <= p < crop_y + out_h, and then
 * samples the map at c = p - 0.5 - crop_y, clamped to [0, out_h - 1]. */
STX_API stx_status stx_render_unmap(stx_context *ctx, const stx_tensor *map,
                                    const stx_frame_geometry *g, stx_tensor **out);
/* Blends frames uint8 (T, H, W, 3) with norm (T, H, W) in [0, 1] (NaN: outside the crop, shown
 * dimmed and uncoloured) into the new uint8 tensor *out (T, H, W, 3): per channel
 * floor((1 - alpha) * frame + alpha * colour + 0.5), and floor(frame * dim + 0.5) where NaN. */
STX_API stx_status stx_render_overlay(stx_context *ctx, const stx_tensor *frames,
                                      const stx_tensor *norm, const stx_render_options *o,
                                      stx_tensor **out);
/* PNG of a uint8 image (H, W, 3) (libpng). */
STX_API stx_status stx_write_png(stx_context *ctx, const stx_tensor *rgb, const char *path);
/* Animated GIF of frames uint8 (T, H, W, 3) (giflib; looping): one palette of at most 256 colours
 * per frame (exact when the frame has no more colours); frame i lasts round(100 (i + 1) / fps) -
 * round(100 i / fps) hundredths of a second, at least 2. */
STX_API stx_status stx_write_gif(stx_context *ctx, const stx_tensor *frames, double fps,
                                 const char *path);
/* Video of frames uint8 (T, H, W, 3): H.264 (yuv420p) in MP4 when FFmpeg has an H.264 encoder,
 * else MPEG-4 part 2; odd sizes are padded by one pixel (the last row/column repeated). The
 * container follows the path's extension (.mp4, .mkv, .mov, .avi; MP4 when unknown); one that
 * holds neither codec (.gif) is STX_E_UNSUPPORTED. *codec (may be NULL) gets the encoder's name
 * ("libx264", "mpeg4"; static string). */
STX_API stx_status stx_write_video(stx_context *ctx, const stx_tensor *frames, double fps,
                                   const char *path, const char **codec);
/* The same, streaming (a long video never held whole): open with the frame size and rate, write
 * frames uint8 (n, height, width, 3) any number of times, close to finish the file (it appears
 * at path only then; *codec as above, may be NULL). Closing after a failed write, or a close that
 * fails, leaves no file. close accepts NULL. */
typedef struct stx_video_writer stx_video_writer;
STX_API stx_status stx_video_writer_open(stx_context *ctx, const char *path, int width, int height,
                                         double fps, stx_video_writer **out);
STX_API stx_status stx_video_writer_write(stx_video_writer *w, const stx_tensor *frames);
STX_API stx_status stx_video_writer_close(stx_video_writer *w, const char **codec);
/* A line plot of values[0..n) (one per frame) with axes, ticks and labels, as a uint8 (H, W, 3)
 * image in *out (new tensor); marks (may be NULL) highlights frames where marks[i] != 0.
 * Non-finite values leave gaps; titles and labels may be NULL. width and height lie in
 * 64..16384; a size leaving no room for the data inside the labels is STX_E_INVALID. The
 * geometry is documented in src/render/plot.c. */
STX_API stx_status stx_render_plot(stx_context *ctx, const float *values, const uint8_t *marks,
                                   int64_t n, const char *title, const char *xlabel,
                                   const char *ylabel, int width, int height, stx_tensor **out);
/* Draws text (printable ASCII; anything else as '?') into a uint8 (H, W, 3) image with its top
 * left corner at (x, y), clipped to the image; a character cell is 6 x 8 pixels times scale
 * (5 x 7 glyphs). Returns the text's width in pixels, (6 * strlen(text) - 1) * scale (0 for ""),
 * whether or not it was clipped; -1 when rgb is not uint8 (H, W, 3) or scale is not 1..256. */
STX_API int stx_render_text(stx_tensor *rgb, int x, int y, const char *text, int scale,
                            const uint8_t color[3]);

/* ---------------------------------------------------------------------------------------------
 * Sessions: a plan for one concrete input shape, and the run state (per thread).
 */
typedef struct stx_session stx_session;

/* Arithmetic of the passes that a method runs many times. bf16: the convolutions inside a
 * chain of fused ones (reading and writing the activations between them, which are stored in
 * bfloat16) take bfloat16 inputs and weights (oneDNN, AMX where available) with fp32
 * accumulation, bias and residual. The first convolution (reading the pixels), the last one
 * of a chain, every other op and every graph output stay fp32. In reverse mode the same
 * convolutions' backward-data reads the output gradient in bfloat16 and writes the input
 * gradient in fp32; every gradient is stored and summed in fp32. */
typedef enum { STX_PRECISION_FP32 = 0, STX_PRECISION_BF16 = 1 } stx_precision;

typedef struct stx_session_options {
    size_t size;
    int num_threads;         /* 0: the context's */
    int use_dnnl;            /* 1 (default): oneDNN kernels for heavy ops; 0: reference kernels */
    int fuse;                /* 1 (default): fold BatchNorm, fuse activations and residual adds */
    const char *const *keep; /* NULL-terminated tensor names that must stay observable */
    /* NULL, or one entry per graph input: a non-NULL entry fixes that input's value at plan time
     * (copied), as needed when a model takes shapes, axes or indices as inputs. The run still
     * receives that input and checks its shape. */
    const stx_tensor *const *fixed_inputs;
    /* Reverse mode. NULL-terminated names (ONNX tensor names, module paths, or "input" for the
     * first graph input) whose gradients stx_session_backward computes. Only the part of the
     * graph between these tensors and the seeded output is swept, and the forward pass keeps only
     * the activations that sweep needs. */
    const char *const *grad_wrt;
    int grad_output; /* graph output that will be seeded (default 0) */
    /* Backward-rule overrides per op type (e.g. guided backpropagation's ReLU, LRP rules). */
    const struct stx_backward_rule *rules;
    int n_rules;
    /* NULL, or a tensor name / module path: plan only the part of the network after that tensor
     * (the nodes that depend on it). The session's one input is then that tensor, with the shape
     * it has for the input shape given to stx_session_create; the rest of the network must
     * read nothing else computed before it (no skip connection around it). Ablation-style
     * methods use it to recompute only the tail; graph outputs that do not depend on the tensor
     * are not computed (their data is NULL). Not combinable with grad_wrt. */
    const char *start_at;
    /* Convolutions in bfloat16 (see stx_precision; needs a CPU with AVX-512 BF16 or AMX and
     * the oneDNN kernels, else STX_E_UNSUPPORTED at creation), forward and, with grad_wrt,
     * backward. Default fp32. */
    stx_precision precision;
} stx_session_options;

STX_API stx_session_options stx_session_options_default(void);
/* Plans the model for an input of the given shape (the first graph input; further inputs
 * must be initialisers or have fully known shapes). */
STX_API stx_status stx_session_create(stx_model *m, const stx_session_options *opt,
                                      const int64_t *input_shape, int rank, stx_session **out);
STX_API void stx_session_free(stx_session *s);
STX_API const char *stx_session_last_error(const stx_session *s);

/* The same for models with several inputs (shapes in graph-input order). */
STX_API stx_status stx_session_create_multi(stx_model *m, const stx_session_options *opt,
                                            int n_inputs, const int64_t *const *shapes,
                                            const int *ranks, stx_session **out);
STX_API stx_status stx_session_run_multi(stx_session *s, int n_inputs,
                                         const stx_tensor *const *inputs);

/* Runs forward. *output points at the first graph output, owned by the session and valid until
 * the next run or free. The input's shape and dtype must match the planned ones. */
STX_API stx_status stx_session_run(stx_session *s, const stx_tensor *input, stx_tensor **output);
STX_API int stx_session_num_outputs(const stx_session *s);
STX_API stx_tensor *stx_session_output(stx_session *s, int i);

/* ---------------------------------------------------------------------------------------------
 * Reverse mode: gradients of an output score with respect to any tensors.
 */
typedef enum { STX_SCORE_LOGIT = 0, STX_SCORE_PROB = 1 } stx_score;

typedef struct stx_seed {
    size_t size;
    /* One class per sample (N entries); -1 (or targets == NULL) picks the top class. */
    const int64_t *targets;
    /* For outputs (N, K, T) with one prediction per frame: N frame indices (-1: every frame). */
    const int64_t *frames;
    stx_score score;           /* the logit (default) or the softmax probability over axis 1 */
    const stx_tensor *weights; /* optional: an arbitrary weighting of the output, same shape;
                                  the score is sum(weights * output) and targets are ignored */
} stx_seed;

STX_API stx_seed stx_seed_default(void);
/* After stx_session_run: seeds the output chosen at plan time and sweeps back to the tensors in
 * opt.grad_wrt. Each sample has its own target. The input tensors given to the run are read
 * again: keep them alive and unchanged until the backward returns. */
STX_API stx_status stx_session_backward(stx_session *s, const stx_seed *seed);
/* The gradient of a grad_wrt tensor after stx_session_backward (owned by the session, valid until
 * the next run: gradients share memory with the activations of a forward pass), or NULL. */
STX_API stx_tensor *stx_session_grad(stx_session *s, const char *name);
/* The value of a tensor kept observable (opt.keep, grad_wrt, graph outputs) after a run, or NULL.
 */
STX_API stx_tensor *stx_session_value(stx_session *s, const char *name);
/* The class each sample was seeded with in the last backward (N entries). */
STX_API const int64_t *stx_session_seeded_targets(const stx_session *s);

/* A backward rule replaces an op type's vector-Jacobian product. The callback receives a context
 * with the node's forward inputs/outputs, the gradients of its outputs (NULL: none flows) and the
 * gradient buffers of its inputs to fill (NULL: not needed; accumulate with +=). Nodes with a rule
 * are never fused away, so every one of them reaches the rule. */
typedef struct stx_rule_ctx stx_rule_ctx;
typedef struct stx_backward_rule {
    const char *op_type; /* ONNX op type, e.g. "Relu" */
    stx_status (*fn)(void *user, stx_rule_ctx *c);
    void *user;
} stx_backward_rule;

STX_API const char *stx_rule_op_type(const stx_rule_ctx *c);
STX_API const char *stx_rule_node_name(const stx_rule_ctx *c);
STX_API int stx_rule_num_inputs(const stx_rule_ctx *c);
STX_API int stx_rule_num_outputs(const stx_rule_ctx *c);
STX_API stx_tensor *stx_rule_input(stx_rule_ctx *c, int i);
STX_API stx_tensor *stx_rule_output(stx_rule_ctx *c, int i);
STX_API stx_tensor *stx_rule_grad_output(stx_rule_ctx *c, int i);
STX_API stx_tensor *stx_rule_grad_input(stx_rule_ctx *c, int i);
/* The op's own backward (to wrap it). */
STX_API stx_status stx_rule_default(stx_rule_ctx *c);

/* Planned shape of any tensor (ONNX name or module path). */
STX_API stx_status stx_session_tensor_shape(const stx_session *s, const char *name,
                                            int64_t shape[STX_MAX_RANK], int *rank);
/* Multiply-accumulate count of one forward pass for the planned shape. */
STX_API int64_t stx_session_macs(const stx_session *s);

/* ---------------------------------------------------------------------------------------------
 * Explanations: maps over the input's time and space axes (definitions: docs/cam.md).
 *
 *     stx_explain_options o = stx_explain_options_default();
 *     o.method = "gradcam";                        // layer: metadata or automatic
 *     stx_explainer *e;
 *     stx_explainer_create(m, &o, stx_tensor_shape(x), stx_tensor_rank(x), &e);
 *     stx_tensor *map;                             // (N, T, H, W), owned by the explainer
 *     stx_explainer_run(e, x, NULL, NULL, &map);   // top class of every sample
 */
typedef enum {
    STX_UPSAMPLE_TRILINEAR = 0, /* torch interpolate(mode='trilinear', align_corners=False) */
    STX_UPSAMPLE_NEAREST = 1,   /* torch interpolate(mode='nearest') */
    STX_UPSAMPLE_NONE = 2       /* stay at the layer's resolution (N, T', H', W') */
} stx_upsample;

/* What replaces a removed region in the perturbation methods (in the model's input space). */
typedef enum {
    STX_BASELINE_ZERO = 0,   /* 0: the dataset's mean colour for a normalised input */
    STX_BASELINE_MEAN = 1,   /* the sample's mean per channel over the clip */
    STX_BASELINE_BLUR = 2,   /* the sample blurred in space (Gaussian, sigma min(H, W) / 16) */
    STX_BASELINE_BLUR3D = 3, /* blurred in space and time (sigma 2 frames) */
    STX_BASELINE_NOISE = 4,  /* uniform noise in the sample's per-channel range (seeded) */
    STX_BASELINE_CLIP = 5    /* baseline_clip */
} stx_baseline;

/* Channel reduction of input-space attributions (gradient family, lrp) to (N, T, H, W). */
typedef enum {
    STX_REDUCE_SUM = 0,     /* sum over the colour channels (signed; default) */
    STX_REDUCE_ABS_SUM = 1, /* sum of |a| */
    STX_REDUCE_MAX_ABS = 2, /* max |a| over channels (Simonyan et al.'s saliency) */
    STX_REDUCE_L2 = 3,      /* sqrt(sum a^2) */
    STX_REDUCE_NONE = 4     /* none: the signed raw attribution, with the input's shape */
} stx_reduce;

/* Integrated Gradients' quadrature over alpha in [0, 1] with `steps` points, as Captum's
 * `method`: riemann_middle, gausslegendre (Captum's default), riemann_left, riemann_right,
 * riemann_trapezoid. The default is the midpoint rule: the path integrands of ReLU and attention
 * networks have kinks, where Gauss-Legendre's nodes converge slowly (docs/gradient.md). */
typedef enum {
    STX_IG_MIDDLE = 0,
    STX_IG_GAUSS_LEGENDRE = 1,
    STX_IG_LEFT = 2,
    STX_IG_RIGHT = 3,
    STX_IG_TRAPEZOID = 4
} stx_ig_schedule;

/* How the attention heads of a block are fused (transformer methods). */
typedef enum { STX_HEADS_MEAN = 0, STX_HEADS_MAX = 1, STX_HEADS_MIN = 2 } stx_head_fusion;

typedef struct stx_explain_options {
    size_t size;
    const char *method; /* see stx_explain_methods(); default "gradcam" */
    const char *layer;  /* ONNX tensor or module path; NULL: stx.target_layer, else automatic */
    const char *layout; /* the input's axes, "NCTHW" or "NTCHW"; NULL: stx.layout, else NCTHW */
    const char *output; /* graph output holding the class scores; NULL: stx.output, else 0 */
    int token_grid[3];  /* T, H, W of token tensors; 0s: stx.token_grid, else from the patch
                           embedding (the last Conv whose strides equal its kernel) */
    stx_score score;    /* logit (default) or softmax probability */
    stx_upsample upsample;
    int batch;       /* forwards per batch of the perturbation methods (default 16) */
    uint64_t seed;   /* noise of smooth-gradcam++ and sscam */
    int samples;     /* noisy or scaled copies (smooth-gradcam++, sscam, iscam); 0: default */
    float noise;     /* noise standard deviation; < 0: the method's default */
    int num_threads; /* 0: the context's */
    /* Called after every batch of forwards (done, total); a non-zero return cancels the run
     * (STX_E_CANCELLED). NULL: none. */
    int (*progress)(void *user, int64_t done, int64_t total);
    void *progress_user;
    /* Perturbation methods (occlusion, frame-occlusion, spatial-occlusion, rise, kernelshap, lime,
     * loco, up; definitions in docs/perturbation.md). They need no layer; the map is always at the
     * input's T x H x W. */
    int window[3];         /* occlusion cuboid T, H, W; 0: the whole axis; -1 (default): the
                              method's (occlusion T/4 x H/7 x W/7, frame-occlusion 1 x H x W,
                              spatial-occlusion T x H/7 x W/7, rounded up) */
    int stride[3];         /* 0: the window; -1 (default): half the default window (1 in time
                              for frame-occlusion) */
    stx_baseline baseline; /* default zero */
    const stx_tensor *baseline_clip; /* STX_BASELINE_CLIP: float32, one sample's shape (with or
                                        without a leading 1) */
    int masks;                       /* rise: masks (default 1000) */
    int cells[3];                    /* rise: grid cells T, H, W (default min(T, 4), 7, 7) */
    float p;                         /* rise: probability that a cell is kept (default 0.5) */
    /* Segment-level methods (kernelshap, lime, loco, up): the segments are a regular grid of
     * cells[0] x cells[1] x cells[2] cuboids (default min(T, 4) x 7 x 7); samples is the
     * coalition budget (default 1000; Kernel SHAP enumerates every coalition when they fit,
     * which gives the exact Shapley values). */
    const char *segments; /* "grid" (default; NULL) or "slic" (per sample, below) */
    float kernel_width;   /* lime: width of the exponential kernel on the cosine distance
                             (default 0.25) */
    /* "slic" segments: 3-D SLIC supervoxels of each sample, as scikit-image's slic makes them
     * with REVEX's settings (time distances weighted 0.2; CIE Lab colour of the clip with the
     * model's stx.mean/stx.std undone; docs/perturbation.md). Kernel SHAP and LIME refuse a
     * sample that gets more than 4096. */
    int n_segments;    /* about this many supervoxels, 1 to 4096 (default 200) */
    float compactness; /* weight of space against colour distance, > 0 (default 20) */
    /* aosa: occlusion tubes that follow the motion (optical flow computed in C) */
    int aosa_stride; /* spacing of the seed points in pixels (default 8) */
    int aosa_crop;   /* side of the occluded square in pixels (default 16) */
    int aosa_stack;  /* AOSA's N_stack_mask: 1 = single tubes; k > 1 = each tube joined with the
                        k tubes of most similar trajectory (k + 1 per mask); default 3 (AOSA) */
    /* extremal: spatio-temporal extremal perturbation (preserve variant) */
    int n_areas;    /* how many of areas[] are used (default 1) */
    float areas[4]; /* target area fractions (default 0.1); the map sums the masks */
    int steps;      /* extremal: optimiser steps per area (0: 300); ig: points of the
                       quadrature, Captum's n_steps (0: 50) */
    /* fp32 (default) or bf16: the perturbation methods' forwards, the gradient family's
     * forwards and backwards (LRP, transformer, CAM methods and extremal: fp32 only) */
    stx_precision precision;
    /* Gradient family (saliency, gradxinput, ig, smoothgrad, smoothgrad-sq, vargrad,
     * guided-backprop, deconvnet, guided-gradcam) and lrp: input-space attributions
     * (docs/gradient.md). samples: noisy copies of the smoothgrad family (0: 25); noise: their
     * standard deviation as a fraction of each sample's value range max(x) - min(x) (< 0: 0.15);
     * baseline/baseline_clip: ig's baseline (zero, mean, blur, blur3d, noise or a clip);
     * batch: interpolants or noisy copies per backward (default 16). */
    stx_reduce reduce;        /* default sum; none: (N, ...) the input's shape and layout */
    stx_ig_schedule schedule; /* ig: default the midpoint rule (see stx_ig_schedule) */
    /* smoothgrad family: NULL, or float32 (S, one sample's shape) standard-normal draws e_s used
     * instead of seeded ones: copy s of sample n is x_n + sigma_n * e_s (S copies; samples is
     * then ignored). Lets a test or a comparison use the very same noise. */
    const stx_tensor *noise_samples;
    /* lrp (docs/lrp.md): a rule for every layer or a composite. Rules: "epsilon", "zero",
     * "gamma", "alpha1beta0", "alpha2beta1", "zplus", "wsquare", "flat", "zbox"; composites:
     * "epsilon-plus" (default: epsilon on dense layers, zplus on convolutions),
     * "epsilon-gamma-box" (epsilon dense, gamma convolutions, zbox on the first layer),
     * "epsilon-plus-flat" (epsilon-plus with flat on the first layer). NULL: the default. */
    const char *rule;
    float epsilon;             /* lrp epsilon rule's stabiliser (< 0: 1e-6) */
    float gamma;               /* lrp gamma rule's weight of the positive part (< 0: 0.25) */
    float zbox_low, zbox_high; /* zbox bounds of the input; both 0 (default): the box of valid
                                  pixels (0..1 through stx.mean/stx.std) when the model says its
                                  normalisation, else each sample's min and max */
    /* Transformer methods (rollout, transformer-attribution, generic-attention; docs/
     * transformers.md): attention maps are the Softmax outputs that feed a MatMul with the values.
     */
    stx_head_fusion head_fusion; /* heads fused by mean (default), max or min (every method) */
    float discard_ratio;         /* rollout: fraction of the lowest attentions zeroed (0) */
    int start_layer;             /* first attention block used (default 0; every method) */
} stx_explain_options;

typedef struct stx_explainer stx_explainer;

STX_API stx_explain_options stx_explain_options_default(void);
/* The method names, NULL-terminated. */
STX_API const char *const *stx_explain_methods(void);
/* Plans the explanation of inputs of the given shape: resolves the layer, plans the sessions the
 * method needs. Errors (unknown method or layer, a layer that cannot be mapped to T x H x W) are
 * reported on the model's context. */
STX_API stx_status stx_explainer_create(stx_model *m, const stx_explain_options *opt,
                                        const int64_t *input_shape, int rank, stx_explainer **out);
STX_API void stx_explainer_free(stx_explainer *e);
STX_API const char *stx_explainer_last_error(const stx_explainer *e);
/* The target layer: its tensor name, a module path whose output it is (or NULL), how it was
 * chosen ("given", "metadata" or "automatic"), and the map grid K, T', H', W'. Perturbation
 * methods have no layer: tensor and module NULL, how "none", grid 1, T, H, W. */
STX_API stx_status stx_explainer_layer(const stx_explainer *e, const char **tensor,
                                       const char **module, const char **how, int64_t grid[4]);
/* Explains a batch. targets: N class indices (-1 or NULL: the top class); frames: for per-frame
 * models (outputs N, K, T), N frame indices (-1 or NULL: the score summed over frames). *map is
 * (N, T, H, W) float32 (or (N, T', H', W') without upsampling), owned by the explainer and valid
 * until the next run. */
STX_API stx_status stx_explainer_run(stx_explainer *e, const stx_tensor *input,
                                     const int64_t *targets, const int64_t *frames,
                                     stx_tensor **map);
/* After a run: the model's output on the clean input (owned by the explainer) and the N targets
 * explained. */
STX_API const stx_tensor *stx_explainer_output(const stx_explainer *e);
STX_API const int64_t *stx_explainer_targets(const stx_explainer *e);
/* After a run of ig or lrp: per sample (N values each, owned by the explainer) the sum of the
 * unreduced attribution and what it should sum to (ig: f(x) - f(baseline), the completeness
 * axiom; lrp: the relevance seeded at the output, conservation). Their difference is the
 * method's gap. STX_E_INVALID for other methods or before a run. */
STX_API stx_status stx_explainer_totals(const stx_explainer *e, const double **attributed,
                                        const double **expected);

/* ---------------------------------------------------------------------------------------------
 * Two-stage models: a frame model giving one feature vector per frame (input (T, C, H, W), an
 * output (T, F)) and a temporal model on the feature sequence (input (1, F, T), layout NCT), as
 * TeCNO's CNN and causal MS-TCN. The temporal model's score for a class at a frame is explained
 * over (feature, time) by a gradient method, and on the pixels of the frames that matter most
 * through both models (docs/gradient.md).
 */
typedef struct stx_chain_options {
    size_t size;
    const char *features_output; /* the frame model's feature output; NULL: "features", else the
                                    first output of shape (T, F) */
    int top_frames;              /* frames given a spatial map (default 5) */
} stx_chain_options;

typedef struct stx_chain_result {
    stx_tensor *temporal; /* float32 (F, T): the method's attribution over the feature sequence */
    stx_tensor *curve;    /* float32 (T): temporal reduced over the features (explain options'
                             reduce; none counts as sum) */
    stx_tensor *spatial;  /* float32 (T, H, W): pixels x d score / d pixels through both models
                             at the top frames, reduced over colours likewise; 0 elsewhere */
    stx_tensor *top;      /* int64 (k): the frames given a map, by decreasing |curve| (only
                             frames whose curve is not 0: a causal model's future never) */
    int64_t target;       /* the class explained (top at that frame when -1 was asked) */
    double score;         /* its score */
} stx_chain_result;

STX_API stx_chain_options stx_chain_options_default(void);
/* Explains class target (-1: the top class) at frame (-1: the score summed over frames) of the
 * temporal model run on frame_model's features of frames (float32 (T, C, H, W), the frame model's
 * input). eo->method picks the temporal method (saliency, gradxinput, ig, smoothgrad,
 * smoothgrad-sq, vargrad, guided-backprop, deconvnet; with its options). Errors on the frame
 * model's context. *out (its tensors owned by the caller) is freed with stx_chain_result_free. */
STX_API stx_status stx_explain_chain(stx_model *frame_model, stx_model *temporal_model,
                                     const stx_tensor *frames, int64_t target, int64_t frame,
                                     const stx_explain_options *eo, const stx_chain_options *co,
                                     stx_chain_result *out);
STX_API void stx_chain_result_free(stx_chain_result *r);

/* ---------------------------------------------------------------------------------------------
 * Metrics: how good an explanation map (N, T, H, W) is. Faithfulness (the model runs
 * on perturbed inputs): deletion and insertion curves and their AUC over the whole T x H x W
 * volume, average drop and increase in confidence. Localisation against a ground-truth mask
 * (N, T, H, W): pointing game per clip and per frame, energy pointing game, IoU, relevance mass
 * and rank accuracy, top-k intersection; against decisive frames (N, T): temporal mass and
 * temporal pointing. Sparsity: Gini index, complexity (entropy). Definitions, the peers'
 * conventions and the defaults: docs/metrics.md.
 *
 *     stx_metrics_options o = stx_metrics_options_default();
 *     o.metrics = "deletion,insertion,pointing";
 *     stx_evaluator *ev;
 *     stx_evaluator_create(ctx, m, &o, stx_tensor_shape(x), stx_tensor_rank(x), &ev);
 *     stx_metrics_result *r;
 *     stx_evaluator_run(ev, x, map, mask, NULL, NULL, NULL, &r);   // top classes
 *     ... r->metrics[i].name, .value, .per_sample, .curves ...
 *     stx_metrics_result_free(r); stx_evaluator_free(ev);
 */

/* Step schedule and area of the deletion/insertion curves over P = T*H*W voxels (ranked by
 * decreasing map value, all colour channels of a voxel together, ties by position). */
typedef enum {
    /* torch-cam DeletionInsertionMetric: ceil(P / steps) voxels per step (the last step takes
     * the rest), x = the actual fraction of voxels changed, trapezoid AUC over x */
    STX_CURVE_TORCHCAM = 0,
    /* RISE (Petsiuk et al.): the same schedule, AUC = (sum_i s_i - s_0/2 - s_n/2) / n, each of
     * the n steps weighted 1/n (a short last step counts fully) */
    STX_CURVE_RISE = 1,
    /* Li et al. (STP CausalMetric): cut points floor(i * P / steps), i = 0..steps, AUC as RISE */
    STX_CURVE_LINSPACE = 2
} stx_curve_convention;

typedef struct stx_metrics_options {
    size_t size;
    /* Comma-separated metric names (stx_metric_names()); NULL: "deletion,insertion". */
    const char *metrics;
    const char *layout; /* the input's axes, "NCTHW" or "NTCHW"; NULL: stx.layout, else NCTHW */
    const char *output; /* graph output holding the class scores; NULL: stx.output, else 0 */
    stx_score score;    /* score of the target class: softmax probability (default) or logit */
    int num_threads;    /* 0: the context's */
    int batch;          /* perturbed inputs per batch (default 16), run in forwards of 2 to 8
                           rows so that no result depends on it (docs/metrics.md) */
    /* deletion / insertion */
    int steps;                  /* intervals of the curve (default 20, torch-cam's) */
    int64_t step_voxels;        /* > 0: voxels (cells) per step instead (RISE's `step`) */
    stx_curve_convention curve; /* default STX_CURVE_TORCHCAM */
    stx_baseline baseline;      /* what deleted voxels become, also avg_drop's (default zero) */
    int insertion_baseline;     /* the start of insertion: -1 (default) the same as baseline,
                                   else an stx_baseline (RISE: STX_BASELINE_BLUR) */
    const stx_tensor *baseline_clip; /* STX_BASELINE_CLIP: float32, one sample's shape */
    uint64_t seed;                   /* STX_BASELINE_NOISE */
    /* Called after every batch of forwards (done, total); non-zero cancels (STX_E_CANCELLED). */
    int (*progress)(void *user, int64_t done, int64_t total);
    void *progress_user;
    /* localisation */
    double tolerance;     /* pointing game: a hit when a maximum lies within this distance in
                             pixels (same frame) of a ground-truth voxel (default 0, Quantus;
                             the original used 15 px at 224x224) */
    double iou_threshold; /* iou: voxels whose min-max normalised map value is >= this
                             (default 0.5) */
    double iou_top;       /* iou: > 0: the top fraction of voxels instead (0..1] */
    int64_t top_k;        /* topk: voxels (default 1000, Quantus) */
    /* deletion / insertion over a grid of cells instead of voxels (Li et al.'s coarsening):
     * cells[a] cells along t, h, w (0: one per voxel on that axis; default all 0, voxels). The
     * map is averaged per cell, cells are ranked (ties by position) and removed or inserted
     * whole; the schedule and the fractions count cells. Li et al.: T, 16, 16. */
    int cells[3];
    /* deletion / insertion order: 0 (default) most relevant first (MoRF), 1 least relevant first
     * (LeRF; Li et al.'s least_first: a faithful map then keeps the score up under deletion) */
    int least_first;
} stx_metrics_options;

/* One metric's numbers. value is the mean of per_sample over the samples where the metric is
 * defined (count of them; NaN when none), e.g. a clip without ground-truth voxels has no
 * pointing game. */
typedef struct stx_metric_result {
    const char *name;   /* as in stx_metric_names() (static) */
    double value;       /* mean over samples */
    int64_t count;      /* samples counted */
    double *per_sample; /* N values (NaN: undefined for that sample) */
    int64_t curve_len;  /* deletion, insertion: points per curve (steps + 1); else 0 */
    double *fractions;  /* curve_len: fraction of the voxels (cells) deleted / inserted */
    double *curves;     /* N x curve_len: the target score at each point */
} stx_metric_result;

typedef struct stx_metrics_result {
    int64_t N;                  /* samples */
    int n_metrics;              /* in the order asked */
    stx_metric_result *metrics; /* n_metrics */
    int64_t *targets;           /* N classes scored (NULL without a model) */
    double *scores;             /* N: their score on the clean input (NULL without a model) */
    int64_t forwards;           /* forward passes run (clean + perturbed samples) */
    stx_context *ctx;           /* whose allocator owns the arrays (internal) */
} stx_metrics_result;

typedef struct stx_evaluator stx_evaluator;

STX_API stx_metrics_options stx_metrics_options_default(void);
/* Metric names, NULL-terminated: deletion, insertion, avg_drop, conf_increase (faithfulness:
 * need the model), pointing, pointing_frame, energy, iou, mass, rank, topk (need a mask),
 * temporal, temporal_pointing (need decisive frames), sparsity, complexity (the map alone). */
STX_API const char *const *stx_metric_names(void);
/* Plans the metrics for inputs of the given shape (N, C, T, H, W) (or NTCHW): checks the
 * options and plans the sessions (clean batch N, perturbed batch `batch`). m may be NULL when
 * only map-and-mask metrics are asked; input_shape may then be the map's (N, T, H, W). Errors
 * on ctx. */
STX_API stx_status stx_evaluator_create(stx_context *ctx, stx_model *m,
                                        const stx_metrics_options *opt, const int64_t *input_shape,
                                        int rank, stx_evaluator **out);
STX_API void stx_evaluator_free(stx_evaluator *ev);
STX_API const char *stx_evaluator_last_error(const stx_evaluator *ev);
/* Computes the metrics of one batch. input: float32 of the planned shape (NULL without a
 * model); map: float32 (N, T, H, W) at the input's resolution, finite; mask: NULL or
 * (N, T, H, W) uint8/bool/float32 (non-zero: ground truth), a (T, H, W) mask when N = 1;
 * events: NULL or (N, T) (or (T) when N = 1) uint8/bool/float32/int64, non-zero on decisive
 * frames; targets: N classes (-1 or NULL: the top class on the clean input); frames: per-frame
 * models, N frame indices (-1 or NULL: the score summed over frames). *out is the caller's,
 * freed with stx_metrics_result_free. */
STX_API stx_status stx_evaluator_run(stx_evaluator *ev, const stx_tensor *input,
                                     const stx_tensor *map, const stx_tensor *mask,
                                     const stx_tensor *events, const int64_t *targets,
                                     const int64_t *frames, stx_metrics_result **out);
STX_API void stx_metrics_result_free(stx_metrics_result *r);
/* Plan and run once (errors on ctx). */
STX_API stx_status stx_evaluate(stx_context *ctx, stx_model *m, const stx_metrics_options *opt,
                                const stx_tensor *input, const stx_tensor *map,
                                const stx_tensor *mask, const stx_tensor *events,
                                const int64_t *targets, const int64_t *frames,
                                stx_metrics_result **out);
/* ---- end of Metrics ----------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------
 * Sanity checks (Adebayo et al., NeurIPS 2018; src/metrics/sanity.c, docs/benchmark.md):
 * cascading model-parameter randomisation and the random-label check, judged by the similarity
 * of two maps.
 *
 * Layers: the model's parameterised layers (Conv, ConvTranspose, Gemm, MatMul, the
 * normalisations, LSTM, GRU, RNN nodes reading float initialisers, grouped by PyTorch module
 * scope with the module's bias Add), counted from the output down: layer 0 is the top.
 */
STX_API int stx_model_num_layers(const stx_model *m);
/* A layer's module path (or node name), and the names of the initialisers it owns; NULL out of
 * range. Strings owned by the model. */
STX_API const char *stx_model_layer_name(const stx_model *m, int i);
STX_API int stx_model_layer_num_params(const stx_model *m, int i);
STX_API const char *stx_model_layer_param(const stx_model *m, int i, int j);
/* The data of an initialiser (owned by the model), NULL when name is not one. */
STX_API const stx_tensor *stx_model_initializer(const stx_model *m, const char *name);
/* A copy of m whose top `top_layers` layers (0..stx_model_num_layers) are re-initialised as
 * PyTorch's reset_parameters does (weights and biases ~ U(+-1/sqrt(fan_in)), recurrent ones
 * U(+-1/sqrt(hidden)), normalisations scale 1, bias 0, mean 0, variance 1), layer i from a
 * generator seeded by (seed, i): cascading, a layer's weights do not depend on top_layers. The
 * copy shares every other tensor with m: m must outlive it, and m itself is never changed.
 * Freed with stx_model_free. */
STX_API stx_status stx_model_randomize(const stx_model *m, int top_layers, uint64_t seed,
                                       stx_model **out);
/* Spearman's rank correlation of a and b (n values; ties get their mean rank; of |a| and |b|
 * when absolute), as scipy.stats.spearmanr. NaN when either is constant. ctx may be NULL. */
STX_API stx_status stx_spearman(stx_context *ctx, const float *a, const float *b, int64_t n,
                                int absolute, double *rho);
/* SSIM of two maps (t, h, w) (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2
 * 0.03), each first min-max normalised to [0, 1] over the whole clip, computed per frame as
 * skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
 * use_sample_covariance=False, data_range=1) and averaged over frames. h, w >= 11. */
STX_API stx_status stx_ssim(stx_context *ctx, const float *a, const float *b, int64_t t, int64_t h,
                            int64_t w, double *ssim);
typedef struct stx_similarity {
    double spearman;     /* of the raw maps */
    double spearman_abs; /* of |map| (Quantus' MPRT default) */
    double ssim;
} stx_similarity;
/* The three similarities of float32 maps (T, H, W) or (N, T, H, W) of one shape (per sample,
 * averaged over samples). */
STX_API stx_status stx_map_similarity(stx_context *ctx, const stx_tensor *a, const stx_tensor *b,
                                      stx_similarity *out);
/* Random-label check: the map for targets (NULL or -1: the top class) against the map for a
 * class drawn uniformly among the other classes (seeded; written to random_targets when not
 * NULL, N entries). A method that depends on the class gives a low similarity. */
STX_API stx_status stx_sanity_random_label(stx_explainer *e, const stx_tensor *x,
                                           const int64_t *targets, uint64_t seed,
                                           int64_t *random_targets, stx_similarity *out);
/* ---- end of Sanity checks ----------------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif /* STX_H */
