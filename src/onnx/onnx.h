/* onnx.h: ONNX protobuf loading into stx's IR. The only door to the protobuf types. */
#ifndef STX_ONNX_H
#define STX_ONNX_H

#include "../graph/ir.h"

/* Parses an ONNX model file into g (g initialised by the caller). Messages name the file. */
stx_status stx__onnx_load_graph(stx_context *ctx, const char *path, stx_graph *g, stx_err *e);
/* Reads a serialized TensorProto file (the ONNX backend test data format). */
stx_status stx__onnx_load_tensor_file(stx_context *ctx, const char *path, stx_tensor **out,
                                      stx_err *e);

#endif
