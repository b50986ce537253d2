#!/usr/bin/env python3
"""LM-head cross-entropy anchors on one GPU: naive PyTorch, Apple Cut Cross-Entropy, Liger, and a PyTorch replica of
SlothSharp's chunk loop; plus (--probe) the cost of each piece of that chunk loop per chunk size.

Run from the repository root on the GPU machine (CCE and Liger from the sources the lead carries):
    PYTHONPATH=.anchors/cce:.anchors/liger/src python3 tools/bench/ce_anchors.py --out $OUT/ce-anchors --probe

Data (NOTES.md recipe): x ~ N(0, 0.25) (std 0.5), W ~ N(0, 0.02^2), both rounded to bf16; labels uniform in [0, V),
all rows valid (or --ignore-every K: every K-th label is ignore_index). Loss: mean over valid rows.
Time: CUDA events around forward + backward (gradients set to None before each step, so the function's own dX/dW
become .grad), median of --iters after --warmup. Transient: torch.cuda.max_memory_allocated during one step minus
what was allocated before it (inputs) minus the gradients left afterwards. Accuracy: relative L2 error of dX and dW
against a float32 computation (TF32 off) on the same bf16 values; loss: relative error against that reference.
Prints a markdown table and writes results.json (+ probe.json) under --out.
"""
import argparse
import json
import math
import os
import statistics
import sys

import torch
import torch.nn.functional as F

SHAPES = ["16384x4096x128256", "8192x2304x256000"]
IGNORE = -100
DEV = "cuda"  # --device cpu: a smoke test of the script itself on tiny shapes (no CCE/Liger, no timing meaning)


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


class Timer:
    """CUDA events on the GPU, perf_counter on the CPU smoke test."""

    def __init__(self):
        if DEV == "cuda":
            self.a, self.b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def start(self):
        if DEV == "cuda":
            self.a.record()
        else:
            import time
            self.t0 = time.perf_counter()

    def stop(self):
        if DEV == "cuda":
            self.b.record()
            torch.cuda.synchronize()
            return self.a.elapsed_time(self.b)
        import time
        return (time.perf_counter() - self.t0) * 1e3


def allocated():
    return torch.cuda.memory_allocated() if DEV == "cuda" else 0


def reset_peak():
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak():
    return torch.cuda.max_memory_allocated() if DEV == "cuda" else 0


def empty_cache():
    if DEV == "cuda":
        torch.cuda.empty_cache()


def make_data(n, h, v, seed=0, ignore_every=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = (torch.randn(n, h, device=DEV, generator=g) * 0.5).to(torch.bfloat16)
    w = (torch.randn(v, h, device=DEV, generator=g) * 0.02).to(torch.bfloat16)
    y = torch.randint(0, v, (n,), device=DEV, generator=g)
    if ignore_every > 0:
        y[::ignore_every] = IGNORE
    return x, w, y


@torch.no_grad()
def reference(x, w, y, rows=2048):
    """float32 loss, dX, dW of mean CE on the bf16 values (chunked over rows; TF32 off)."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        x32, w32 = x.float(), w.float()
        valid = y != IGNORE
        count = max(int(valid.sum().item()), 1)
        dx = torch.zeros_like(x32)
        dw = torch.zeros_like(w32)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for s in range(0, x.shape[0], rows):
            xc, yc, vc = x32[s:s + rows], y[s:s + rows], valid[s:s + rows]
            z = xc @ w32.t()
            lse = torch.logsumexp(z, dim=-1)
            yy = yc.clamp(min=0)
            zy = z.gather(1, yy[:, None]).squeeze(1)
            total += ((lse - zy) * vc).double().sum()
            z.sub_(lse[:, None]).exp_()
            z[torch.arange(z.shape[0], device=z.device), yy] -= 1.0
            z.mul_((vc.float() / count)[:, None])
            dx[s:s + rows] = z @ w32
            dw.addmm_(z.t(), xc)
            del z
        return (total / count).item(), dx, dw
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


# ---- methods: each takes (x, w, y) with x, w requiring grad and returns the scalar mean loss ----

def naive(x, w, y):
    return F.cross_entropy((x @ w.t()).float(), y, ignore_index=IGNORE)


def cce_method(**kw):
    def f(x, w, y):
        from cut_cross_entropy import linear_cross_entropy  # imported here: a missing anchor fails its own rows only
        return linear_cross_entropy(x, w, y, ignore_index=IGNORE, **kw)
    return f


def liger(x, w, y):
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction
    out = LigerFusedLinearCrossEntropyFunction.apply(x, w, y, None, None, IGNORE)
    return out[0] if isinstance(out, tuple) else out


class SlothReplica(torch.autograd.Function):
    """SlothSharp's fused loop written with torch ops (the CE kernel replaced by a float32 softmax): gradients during
    forward, K rows per chunk, dX written into its slice, dW accumulated with addmm beta=1 (bf16) or in float32."""

    @staticmethod
    def forward(ctx, x, w, y, rows, fp32_dw):
        n = x.shape[0]
        valid = y != IGNORE
        count = max(int(valid.sum().item()), 1)  # SlothSharp's one host read
        dx = torch.empty_like(x)
        dw = torch.zeros(w.shape, dtype=torch.float32 if fp32_dw else w.dtype, device=w.device)
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        for s in range(0, n, rows):
            xc, yc = x[s:s + rows], y[s:s + rows]
            z = xc @ w.t()
            zf = z.float()
            lse = torch.logsumexp(zf, -1)
            yy = yc.clamp(min=0)
            vc = (yc != IGNORE).float()
            total += ((lse - zf.gather(1, yy[:, None]).squeeze(1)) * vc).sum()
            zf.sub_(lse[:, None]).exp_()
            zf[torch.arange(zf.shape[0], device=zf.device), yy] -= 1.0
            zf.mul_((vc / count)[:, None])
            z.copy_(zf)
            del zf
            torch.mm(z, w, out=dx[s:s + rows])
            if fp32_dw:
                dw.add_(z.t() @ xc)
            else:
                dw.addmm_(z.t(), xc)
        ctx.save_for_backward(dx, dw.to(w.dtype))
        return total / count

    @staticmethod
    def backward(ctx, g):
        dx, dw = ctx.saved_tensors
        return dx * g, dw * g, None, None, None


def replica(rows, fp32_dw=False):
    return lambda x, w, y: SlothReplica.apply(x, w, y, rows, fp32_dw)


def methods(names):
    table = {
        "naive": naive,
        "cce": cce_method(),
        "cce-nofilter": cce_method(filter_eps=None),
        "liger": liger,
    }
    out = []
    for n in names:
        if n.startswith("replica-"):  # replica-<rows>[-fp32dw]
            parts = n.split("-")
            out.append((n, replica(int(parts[1]), fp32_dw="fp32dw" in parts)))
        else:
            out.append((n, table[n]))
    return out


def step(fn, x, w, y):
    x.grad = None
    w.grad = None
    loss = fn(x, w, y)
    loss.backward()
    return loss


def measure(name, fn, x, w, y, ref, warmup, iters):
    row = {"method": name}
    try:
        for _ in range(warmup):
            step(fn, x, w, y)
        sync()
        times = []
        for _ in range(iters):
            x.grad = None
            w.grad = None
            t = Timer()
            t.start()
            loss = fn(x, w, y)
            loss.backward()
            times.append(t.stop())
        row["ms"] = statistics.median(times)
        row["ms_min"] = min(times)
        # memory: one step from a clean peak
        x.grad = None
        w.grad = None
        sync()
        base = allocated()
        reset_peak()
        loss = fn(x, w, y)
        loss.backward()
        sync()
        grads = sum(t.grad.numel() * t.grad.element_size() for t in (x, w) if t.grad is not None)
        row["transient_gb"] = (peak() - base - grads) / 1e9
        ref_loss, rdx, rdw = ref
        row["loss"] = loss.item()
        row["loss_rel_err"] = abs(loss.item() - ref_loss) / abs(ref_loss)
        row["rel_dx"] = ((x.grad.float() - rdx).norm() / rdx.norm()).item()
        row["rel_dw"] = ((w.grad.float() - rdw).norm() / rdw.norm()).item()
    except Exception as e:  # a missing anchor or an OOM must not lose the other rows
        row["error"] = f"{type(e).__name__}: {e}"[:300]
    x.grad = None
    w.grad = None
    empty_cache()
    return row


# ---- probe: the pieces of the chunk loop, per chunk size ----

def time_op(fn, reps=10, warmup=2):
    for _ in range(warmup):
        fn()
    sync()
    t = Timer()
    t.start()
    for _ in range(reps):
        fn()
    return t.stop() / reps


def probe(shape, chunk_rows, x, w):
    n, h, v = x.shape[0], x.shape[1], w.shape[0]
    out = []
    dw = torch.zeros_like(w)
    dw32 = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
    dx = torch.empty_like(x)
    for k in chunk_rows:
        xc = x[:k]
        z = xc @ w.t()
        r = {"shape": shape, "rows": k, "chunk_gb_bf16": k * v * 2 / 1e9}
        gemm_flop = 2.0 * k * h * v
        r["logits_ms"] = time_op(lambda: torch.mm(xc, w.t(), out=z))
        # one read + one write of the chunk: the floor of an in-place elementwise pass (the CE kernel reads twice)
        r["rw_pass_ms"] = time_op(lambda: z.mul_(1.0))
        r["read_pass_ms"] = time_op(lambda: z.amax(dim=-1))
        r["torch_softmax_grad_ms"] = time_op(lambda: z.copy_(torch.softmax(z.float(), -1)))
        r["dx_ms"] = time_op(lambda: torch.mm(z, w, out=dx[:k]))
        r["dx_copy_ms"] = time_op(lambda: dx[:k].copy_(z @ w))
        r["dw_bf16_addmm_ms"] = time_op(lambda: dw.addmm_(z.t(), xc))
        r["dw_fp32_add_ms"] = time_op(lambda: dw32.add_(z.t() @ xc))
        try:  # PyTorch >= 2.8 (mm with out_dtype): bf16 inputs, float32 output in one GEMM
            r["dw_fp32_out_dtype_ms"] = time_op(lambda: dw32.add_(torch.mm(z.t(), xc, out_dtype=torch.float32)))
        except Exception as e:
            r["dw_fp32_out_dtype_ms"] = None
            r["dw_fp32_out_dtype_error"] = str(e)[:120]
        for key in ("logits_ms", "dx_ms", "dw_bf16_addmm_ms"):
            r[key.replace("_ms", "_tflops")] = gemm_flop / (r[key] * 1e-3) / 1e12
        chunks = math.ceil(n / k)
        per_chunk = r["logits_ms"] + 1.5 * r["rw_pass_ms"] + r["dx_ms"] + r["dw_bf16_addmm_ms"]
        r["projected_loop_ms"] = chunks * per_chunk
        r["projected_loop_fp32dw_ms"] = chunks * (per_chunk - r["dw_bf16_addmm_ms"] + r["dw_fp32_add_ms"])
        out.append(r)
        del z
        empty_cache()
    full = torch.empty(4096, 4096, dtype=torch.bfloat16, device=DEV)
    t = time_op(lambda: torch.mm(full, full))
    for r in out:
        r["ref_4096cube_tflops"] = 2 * 4096 ** 3 / (t * 1e-3) / 1e12
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--methods", default="naive,cce,cce-nofilter,liger,replica-523,replica-512,replica-1536")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--ignore-every", type=int, default=0)
    ap.add_argument("--probe", action="store_true", help="also time the chunk loop's pieces")
    ap.add_argument("--probe-only", action="store_true")
    ap.add_argument("--probe-rows", default="512,1024,2048,4096")
    ap.add_argument("--out", default="ce-anchors")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = ap.parse_args()
    global DEV
    DEV = a.device
    os.makedirs(a.out, exist_ok=True)
    dev = torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu (smoke test)"
    # The GPU bundle's commit (ce_gpu_extra.sh exports it); git only when run from a checkout.
    commit = os.environ.get("SLOTHSHARP_COMMIT") or os.popen("git rev-parse --short HEAD 2>/dev/null").read().strip() or "unknown"
    print(f"device: {dev}; torch {torch.__version__}; commit {commit}", flush=True)
    rows, probes = [], []
    for shape in a.shapes.split(","):
        n, h, v = map(int, shape.split("x"))
        x, w, y = make_data(n, h, v, ignore_every=a.ignore_every)
        if a.probe or a.probe_only:
            probes += probe(shape, [int(k) for k in a.probe_rows.split(",")], x, w)
            print(f"probe {shape} done", flush=True)
        if a.probe_only:
            continue
        ref = reference(x, w, y)
        x.requires_grad_(True)
        w.requires_grad_(True)
        for name, fn in methods(a.methods.split(",")):
            r = measure(name, fn, x, w, y, ref, a.warmup, a.iters)
            r["shape"] = shape
            rows.append(r)
            print(json.dumps(r), flush=True)
        del x, w, y, ref
        empty_cache()

    lines = [f"# LM-head CE anchors: {dev}, torch {torch.__version__}, commit {commit}", "",
             "| N×H×V | method | ms (median) | 6NHV TFLOP/s | transient GB | rel dX | rel dW | loss rel err |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n, h, v = map(int, r["shape"].split("x"))
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['method']} | error: {r['error'][:80]} | | | | | |")
            continue
        lines.append(f"| {r['shape']} | {r['method']} | {r['ms']:.1f} | {6 * n * h * v / r['ms'] / 1e9:.0f} | "
                     f"{r['transient_gb']:.2f} | {r['rel_dx']:.2e} | {r['rel_dw']:.2e} | {r['loss_rel_err']:.1e} |")
    if probes:
        lines += ["", "## Chunk-loop pieces (ms per chunk; TFLOP/s of the GEMMs)", "",
                  "| shape | rows | chunk GB | logits | r+w pass | read pass | torch softmax-grad | dX (out=) | dX+copy | dW bf16 addmm | dW fp32 add | dW fp32 out_dtype | logits/dX/dW TFLOP/s | loop ms (bf16 dW) | loop ms (fp32 dW) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for r in probes:
            od = r["dw_fp32_out_dtype_ms"]
            lines.append(f"| {r['shape']} | {r['rows']} | {r['chunk_gb_bf16']:.2f} | {r['logits_ms']:.3f} | {r['rw_pass_ms']:.3f} | "
                         f"{r['read_pass_ms']:.3f} | {r['torch_softmax_grad_ms']:.3f} | {r['dx_ms']:.3f} | {r['dx_copy_ms']:.3f} | "
                         f"{r['dw_bf16_addmm_ms']:.3f} | {r['dw_fp32_add_ms']:.3f} | {'n/a' if od is None else f'{od:.3f}'} | "
                         f"{r['logits_tflops']:.0f}/{r['dx_tflops']:.0f}/{r['dw_bf16_addmm_tflops']:.0f} | "
                         f"{r['projected_loop_ms']:.1f} | {r['projected_loop_fp32dw_ms']:.1f} |")
        lines.append(f"\n(4096³ bf16 mm: {probes[0]['ref_4096cube_tflops']:.0f} TFLOP/s; loop ms = chunks × (logits + 1.5 r+w "
                     "passes + dX + dW), the CE kernel's 2 reads + 1 write)")
    md = "\n".join(lines)
    print(md)
    with open(os.path.join(a.out, "ce-anchors.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"device": dev, "torch": torch.__version__, "commit": commit, "rows": rows, "probe": probes}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
