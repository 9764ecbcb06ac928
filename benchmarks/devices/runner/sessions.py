"""The artifact's own runtime: onnxruntime, or ai-edge-litert (tflite-runtime on old boards)."""

ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
              "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


class OrtSession:
    def __init__(self, path, threads):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.runtime = "onnxruntime %s" % ort.__version__
        self.inputs = [(i.name, tuple(d if isinstance(d, int) else (d or "?") for d in i.shape),
                        ORT_DTYPES.get(i.type, i.type)) for i in self._sess.get_inputs()]
        self.output_names = [o.name for o in self._sess.get_outputs()]

    def run(self, feeds):
        return self._sess.run(None, feeds)


class _LiteIO:
    """A TFLite input or output: its index, and the scale and zero point that map the
    float values we feed and read onto a quantized (int8/uint8/int16) tensor."""

    def __init__(self, name, detail):
        import numpy as np

        self.name, self.index, self.dtype = name, detail["index"], np.dtype(detail["dtype"])
        scale, zero = detail.get("quantization", (0.0, 0))
        self.quantized = self.dtype.kind in "iu" and self.dtype.itemsize <= 2 and scale > 0
        self.scale, self.zero = float(scale), int(zero)
        sig = detail.get("shape_signature")
        dims = sig if sig is not None and len(sig) else detail["shape"]
        self.shape = tuple(int(d) if d >= 0 else ("batch" if axis == 0 else "d%d" % axis)
                           for axis, d in enumerate(dims))

    def encode(self, x):
        import numpy as np

        if not self.quantized:
            return np.ascontiguousarray(x, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        return np.clip(np.round(np.asarray(x, np.float32) / self.scale) + self.zero, info.min,
                       info.max).astype(self.dtype)

    def decode(self, y):
        import numpy as np

        return (y.astype(np.float32) - self.zero) * np.float32(self.scale) if self.quantized else y


class LiteSession:
    def __init__(self, path, threads):
        try:
            from ai_edge_litert.interpreter import Interpreter
            dist = "ai-edge-litert"
        except ImportError:
            from tflite_runtime.interpreter import Interpreter
            dist = "tflite-runtime"
        self._interp = Interpreter(model_path=path, num_threads=threads)
        self._interp.allocate_tensors()
        try:
            from importlib import metadata
            version = metadata.version(dist)
        except Exception:
            version = "?"
        try:  # as the local session says it: which kernels run the graph
            ops = [o.get("op_name") for o in self._interp._get_ops_details()]
            provider = " (XNNPACK)" if "DELEGATE" in ops else " (builtin kernels)"
        except Exception:
            provider = ""
        self.runtime = "%s %s%s" % (dist, version, provider)
        sigs = self._interp.get_signature_list() or {}
        self._runner = None
        if sigs:
            runner = self._interp.get_signature_runner(next(iter(sigs)))
            if getattr(runner, "_subgraph_index", 1) != 0:
                self._runner = runner
            order = {d["index"]: i for i, d in enumerate(self._interp.get_output_details())}
            self._in = [_LiteIO(n, d) for n, d in runner.get_input_details().items()]
            self._out = sorted((_LiteIO(n, d) for n, d in runner.get_output_details().items()),
                               key=lambda o: order.get(o.index, o.index))
        else:
            self._in = [_LiteIO(d["name"], d) for d in self._interp.get_input_details()]
            self._out = [_LiteIO(d["name"], d) for d in self._interp.get_output_details()]
        self.inputs = [(io.name, io.shape, "float32" if io.quantized else io.dtype.name) for io in self._in]
        self.output_names = [o.name for o in self._out]
        self._shapes = {io.name: None for io in self._in}

    def run(self, feeds):
        if self._runner is not None:
            got = self._runner(**{io.name: io.encode(feeds[io.name]) for io in self._in})
            return [o.decode(got[o.name]) for o in self._out]
        resized = False
        for io in self._in:
            shape = tuple(feeds[io.name].shape)
            if shape != self._shapes[io.name]:
                self._interp.resize_tensor_input(io.index, list(shape), strict=False)
                self._shapes[io.name], resized = shape, True
        if resized:
            self._interp.allocate_tensors()
        for io in self._in:
            self._interp.set_tensor(io.index, io.encode(feeds[io.name]))
        self._interp.invoke()
        return [o.decode(self._interp.get_tensor(o.index)) for o in self._out]


def open_session(kind, path, threads):
    return (OrtSession if kind == "onnx" else LiteSession)(path, threads)
