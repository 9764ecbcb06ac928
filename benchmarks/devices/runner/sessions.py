"""The artifact's own runtime: onnxruntime, ai-edge-litert (tflite-runtime on old boards),
OpenVINO (an IR: .xml with its .bin beside it) or ExecuTorch (.pte). Standard library,
numpy and that runtime only; the device has nothing of this project."""

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


OV_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "i8": "int8",
             "u8": "uint8", "boolean": "bool"}


class OvSession:
    """The IR on the device's CPU with the settings the host's session uses: the latency
    hint on `threads` threads, f32 float arithmetic (the export's record may say other),
    a dynamic batch compiled for the shapes of the first feed (and again for new ones)."""

    def __init__(self, path, threads):
        import json

        import openvino as ov

        self._core = ov.Core()
        self._model = self._core.read_model(path)
        record = {}
        try:
            if self._model.has_rt_info(["compressor", "record"]):
                record = json.loads(self._model.get_rt_info(["compressor", "record"]).astype(str))
        except Exception:
            record = {}
        self._config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads),
                        "INFERENCE_PRECISION_HINT": record.get("inference_precision", "f32"),
                        "DYNAMIC_QUANTIZATION_GROUP_SIZE": int(record.get("dynamic_quantization_group_size", 0))}
        self.runtime = "openvino %s" % ov.__version__.split("-")[0]
        self.inputs = []
        for port in self._model.inputs:
            dims = tuple(d.get_length() if d.is_static else ("batch" if i == 0 else "d%d" % i)
                         for i, d in enumerate(port.get_partial_shape()))
            kind = port.get_element_type().get_type_name()
            self.inputs.append((port.any_name, dims, OV_DTYPES.get(kind, kind)))
        names = record.get("output_names") or []
        self.output_names = names if len(names) == len(self._model.outputs) else \
            ["output_%d" % i for i in range(len(self._model.outputs))]
        self._dynamic = any(isinstance(d, str) for _, dims, _ in self.inputs for d in dims)
        self._requests = {}

    def _request(self, feeds):
        key = tuple(sorted((k, tuple(v.shape)) for k, v in feeds.items())) if self._dynamic else ()
        if key not in self._requests:
            model = self._model
            if self._dynamic:
                model = self._model.clone()
                model.reshape(dict(key))
            if len(self._requests) > 4:
                self._requests.clear()
            self._requests[key] = self._core.compile_model(model, "CPU", self._config).create_infer_request()
        return self._requests[key]

    def run(self, feeds):
        import numpy as np

        request = self._request(feeds)
        request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()})
        return [request.get_output_tensor(i).data.copy() for i in range(len(self._model.outputs))]


ET_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
             11: "bool"}


class PteSession:
    """An ExecuTorch program's forward on XNNPACK with a pool of `threads`. Names and the
    symbolic batch come from the signature our export keeps in the program (a constant
    method), else from the planned shapes with positional names."""

    def __init__(self, path, threads):
        import json

        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(int(threads))
        runtime = Runtime.get()
        with open(path, "rb") as f:
            self._program = runtime.load_program(f.read())
        meta, self.max_batch = None, None
        if "compressor_signature" in self._program.method_names:
            try:
                raw = self._program.load_method("compressor_signature").execute([])[0]
                meta = json.loads(bytes(raw.numpy().astype("uint8").tolist()).decode())
            except Exception:
                meta = None
        if meta:
            self.inputs = [(i["name"], tuple(d if isinstance(d, int) else "batch" for d in i["shape"]),
                            i.get("dtype", "float32")) for i in meta["inputs"]]
            self.output_names = list(meta["output_names"])
            self.max_batch = meta.get("max_batch")
        else:
            m = self._program.metadata("forward")
            self.inputs = [("input_%d" % i, tuple(m.input_tensor_meta(i).sizes()),
                            ET_DTYPES.get(m.input_tensor_meta(i).dtype(), "float32")) for i in range(m.num_inputs())]
            self.output_names = ["output_%d" % i for i in range(m.num_outputs())]
        self._method = self._program.load_method("forward")
        try:
            from executorch.version import __version__ as version
        except Exception:
            version = "?"
        self.runtime = "executorch %s (XNNPACK)" % version.split("+")[0]

    def run(self, feeds):
        import numpy as np
        import torch

        n = len(feeds[self.inputs[0][0]]) if self.inputs else 0
        step = self.max_batch if self.max_batch and self.inputs[0][1][:1] == ("batch",) else n
        parts = []
        for start in range(0, max(n, 1), step or 1):
            args = [torch.from_numpy(np.ascontiguousarray(feeds[name][start:start + step] if step else feeds[name]))
                    for name, _, _ in self.inputs]
            out = self._method.execute(args)
            parts.append([t.detach().float().numpy() if hasattr(t, "detach") else np.asarray(t) for t in out])
        return parts[0] if len(parts) == 1 else [np.concatenate(o) for o in zip(*parts)]


SESSIONS = {"onnx": OrtSession, "tflite": LiteSession, "openvino": OvSession, "executorch": PteSession}


def open_session(kind, path, threads):
    return SESSIONS[kind](path, threads)
