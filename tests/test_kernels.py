"""kernels/: each Triton kernel against its pure-torch reference, run by Triton's interpreter on
CPU tensors, its wiring into hear_vec, its custom-op registration, and the CPU path's
independence from Triton.

The interpreter must be switched on before Triton is imported, and other test modules in the
same pytest process may import Triton first (torch.compile does), so the kernel checks run in
ONE subprocess with ``TRITON_INTERPRET=1`` (a module-scoped fixture); each test then asserts
on its own part of that run. Sizes are tiny: the interpreter executes kernels in numpy.

Groups: reference parity (per kernel, float32 and float64, ragged sizes, degenerate rows),
engine wiring (hear_vec's CUDA branches, driven on the CPU through the interpreter), custom
ops (fake tensors, torch.compile), CPU path without Triton, bad input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kernels

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(r'''
    import json, os, sys
    assert os.environ.get("TRITON_INTERPRET") == "1"
    sys.path.insert(0, sys.argv[1])
    import torch
    import hear_vec._kernels as hk
    import kernels
    from kernels import (triton_lsa_recursion, lsa_recursion_reference,
                         triton_spectral_delta, spectral_delta_reference,
                         triton_stoi_segments, stoi_segments_reference)
    from hear_vec import dsp
    from hear_vec.ops import denoise, METHODS
    from hear_vec.ops._common import analyze, quantile
    from hear_vec.ops.spectral_gate import spectral_gate_gain
    from hear_vec.ops.mmse_lsa import mmse_lsa_gain
    from hear_vec.metrics import stoi, stoi_reference, stoi_from_reference

    out = {}
    def err(a, b):
        return float((a - b).abs().max()) if a.numel() else 0.0
    def rel(a, b):
        return float(((a - b).abs() / (b.abs() + 1e-12)).max()) if a.numel() else 0.0

    gen = torch.Generator().manual_seed(0)
    # ---- lsa_recursion: N frames x R rows x F bins, R*F not a multiple of the block
    for dt in (torch.float32, torch.float64):
        name = str(dt).split(".")[-1]
        for n, r, f in ((9, 3, 37), (1, 2, 5)):
            gamma = (torch.rand(n, r, f, generator=gen, dtype=dt) * 30) ** 2 * torch.rand(
                n, r, f, generator=gen, dtype=dt)
            gamma[0, 0, :4] = torch.tensor([0.0, 1e-12, 1.0, 1e12], dtype=dt)
            alpha = 0.9 + 0.09 * torch.rand(r, 1, generator=gen, dtype=dt)
            wet = (1 - alpha) * (gamma - 1).clamp_min(0)
            a = triton_lsa_recursion(gamma, wet, alpha)
            b = lsa_recursion_reference(gamma, wet, alpha)
            out[f"lsa_{name}_{n}x{r}x{f}"] = err(a, b)
            out[f"lsa_{name}_{n}x{r}x{f}_range"] = [float(a.min()), float(a.max())]
    # ---- stoi_segments: random envelopes, a silent band, a silent frame, M = 30 and 41
    for dt in (torch.float32, torch.float64):
        name = str(dt).split(".")[-1]
        for m in (30, 41):
            x = torch.rand(3, 15, m, generator=gen, dtype=dt) + 0.05
            y = 0.5 * x + 0.3 * torch.rand(3, 15, m, generator=gen, dtype=dt)
            y[0, 3] = 0.0
            x[1, :, 5] = 0.0
            x[2] = 0.0
            (s1, e1), (s2, e2) = triton_stoi_segments(x, y), stoi_segments_reference(x, y)
            out[f"stoi_seg_{name}_{m}"] = max(err(s1, s2), err(e1, e2))
            out[f"stoi_seg_{name}_{m}_shape"] = list(s1.shape)
    # ---- spectral_delta: every method, ragged rows, strength 0 rows
    for dt in (torch.float32, torch.float64):
        name = str(dt).split(".")[-1]
        x = torch.randn(6, 3000, generator=gen, dtype=dt) * 0.1
        lengths = torch.tensor([3000, 2500, 1200, 3000, 900, 3000])
        x = x * dsp.time_mask(lengths, 3000, x)
        spec = analyze(x, lengths, True)
        knobs = torch.rand(6, 3, generator=gen, dtype=dt)
        method = torch.tensor([0, 1, 2, 3, 4, 0])
        args = (spec.X, spec.mag, method, knobs, quantile(spec, 0.5),
                dsp.masked_mean(spec.mag.square(), spec.fmask, keepdim=True),
                spectral_gate_gain(spec, knobs), mmse_lsa_gain(spec, knobs))
        a, b = triton_spectral_delta(*args), spectral_delta_reference(*args)
        out[f"delta_{name}"] = err(a, b) / float(b.abs().max())
        k0 = knobs.clone()
        k0[:, 0] = 0
        zero = triton_spectral_delta(spec.X, spec.mag, torch.tensor([0, 1, 0, 1, 1, 0]), k0,
                                     *args[4:])
        out[f"delta_{name}_identity"] = float(zero.abs().max())
        out[f"delta_{name}_wavelet_rows"] = float(a[3].abs().max())

    # ---- wiring: hear_vec's CUDA branches, with the interpreted kernels standing in
    class Shim:
        lsa_recursion = staticmethod(triton_lsa_recursion)
        stoi_segments = staticmethod(triton_stoi_segments)
        spectral_delta = staticmethod(triton_spectral_delta)
    x = torch.randn(5, 4000, generator=gen) * 0.1
    lengths = torch.tensor([4000, 3500, 2000, 4000, 3100])
    knobs = torch.rand(5, 3, generator=gen)
    method = torch.arange(5)
    clean = torch.randn(5, 4000, generator=gen) * 0.1
    plain_y = denoise(x, method, knobs, lengths, dispatch="masked")
    plain_s = stoi(clean, x, 16000, lengths)
    plain_e = stoi(clean, x, 16000, lengths, extended=True)
    ref_plain = stoi_reference(clean, 16000, lengths)
    hk.fused = lambda t: Shim
    fused_y = denoise(x, method, knobs, lengths, dispatch="masked")
    fused_s = stoi(clean, x, 16000, lengths)
    fused_e = stoi(clean, x, 16000, lengths, extended=True)
    ref_fused = stoi_reference(clean, 16000, lengths)
    both = stoi_from_reference(ref_fused, x, 16000)
    out["wire_denoise"] = err(fused_y, plain_y) / float(plain_y.abs().max())
    out["wire_stoi"] = err(fused_s, plain_s)
    out["wire_estoi"] = err(fused_e, plain_e)
    out["wire_from_reference"] = max(err(both[0], plain_s), err(both[1], plain_e))
    out["wire_reference_light"] = [list(ref_fused.unit.shape), list(ref_plain.unit.shape)]
    out["wire_scores"] = [float(v) for v in plain_s]

    # ---- the same branches with the registered custom ops, under torch.compile(fullgraph)
    hk.fused = lambda t: kernels.fused_ops
    compiled = torch.compile(lambda a, m, k, l: denoise(a, m, k, l, dispatch="masked"),
                             fullgraph=True, backend="aot_eager")
    out["compiled_denoise"] = err(compiled(x, method, knobs, lengths), plain_y) / float(
        plain_y.abs().max())
    compiled_stoi = torch.compile(lambda c, p, l: stoi(c, p, 16000, l, extended=True),
                                  fullgraph=True, backend="aot_eager")
    out["compiled_estoi"] = err(compiled_stoi(clean, x, lengths), plain_e)

    # ---- custom ops: registered, fake tensors, traced by torch.compile as one node
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        g = torch.empty(4, 2, 7)
        fake = torch.ops.hear_vec.lsa_recursion(g, g, torch.empty(2, 1))
        s_f, e_f = torch.ops.hear_vec.stoi_segments(torch.empty(2, 15, 40),
                                                    torch.empty(2, 15, 40))
    out["fake_shapes"] = [list(fake.shape), list(s_f.shape), list(e_f.shape)]
    xs = torch.rand(2, 15, 35, generator=gen) + 0.1
    ys = torch.rand(2, 15, 35, generator=gen) + 0.1
    fn = torch.compile(lambda a, b: torch.ops.hear_vec.stoi_segments(a, b), fullgraph=True,
                       backend="eager")
    got = fn(xs, ys)
    want = stoi_segments_reference(xs, ys)
    out["compiled_op"] = max(err(got[0], want[0]), err(got[1], want[1]))
    print("RESULT" + json.dumps(out))
''')


@pytest.fixture(scope="module")
def interpreted() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", WORKER, str(ROOT)], capture_output=True,
                          text=True, cwd=str(ROOT), env=env, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT"):])


# ---------------------------------------------------------------------------- reference parity
def test_lsa_recursion_kernel_matches_reference(interpreted):
    for key in ("float32_9x3x37", "float32_1x2x5"):
        assert interpreted[f"lsa_{key}"] < 2e-6, key
    for key in ("float64_9x3x37", "float64_1x2x5"):
        # literal constants of a Triton kernel are float32: ~1e-8 in float64
        assert interpreted[f"lsa_{key}"] < 1e-7, key
    lo, hi = interpreted["lsa_float32_9x3x37_range"]
    assert 0.0 < lo and hi <= 1.0  # gains are never amplifying, never zero (xi floor)


def test_stoi_segments_kernel_matches_reference(interpreted):
    for m in (30, 41):
        assert interpreted[f"stoi_seg_float32_{m}"] < 2e-5
        assert interpreted[f"stoi_seg_float64_{m}"] < 1e-12
    assert interpreted["stoi_seg_float32_30_shape"] == [3, 1]
    assert interpreted["stoi_seg_float32_41_shape"] == [3, 12]


def test_spectral_delta_kernel_matches_reference(interpreted):
    assert interpreted["delta_float32"] < 1e-5
    assert interpreted["delta_float64"] < 1e-12
    for name in ("float32", "float64"):  # strength 0 is exactly the identity; wavelet rows too
        assert interpreted[f"delta_{name}_identity"] == 0.0
        assert interpreted[f"delta_{name}_wavelet_rows"] == 0.0


# ------------------------------------------------------------------------------ engine wiring
def test_hear_vec_cuda_branches_give_the_torch_results(interpreted):
    """denoise (masked dispatch), stoi and stoi_from_reference with the fused kernels standing
    in for their CUDA branches equal the plain torch path."""
    assert interpreted["wire_denoise"] < 1e-5
    assert interpreted["wire_stoi"] < 1e-5 and interpreted["wire_estoi"] < 1e-5
    assert interpreted["wire_from_reference"] < 1e-5
    light, full = interpreted["wire_reference_light"]
    assert light == [5, 15, 0, 0] and full[-1] == 30  # the fused path stores no segments
    assert min(interpreted["wire_scores"]) > 0.0  # real scores, not the 1e-5 fallback


def test_fused_branches_compile_fullgraph(interpreted):
    """torch.compile(fullgraph=True) traces hear_vec's fused branches (the custom ops with
    their fake implementations) without a graph break, and gives the torch results."""
    assert interpreted["compiled_denoise"] < 1e-5
    assert interpreted["compiled_estoi"] < 1e-5


# -------------------------------------------------------------------------------- custom ops
def test_custom_ops_have_fake_implementations_and_compile(interpreted):
    assert interpreted["fake_shapes"] == [[4, 2, 7], [2, 11], [2, 11]]
    assert interpreted["compiled_op"] < 1e-5
    for op in ("lsa_recursion", "spectral_delta", "stoi_segments"):
        assert hasattr(torch.ops.hear_vec, op)


# ------------------------------------------------------------------ CPU path without Triton
def test_cpu_path_works_without_triton():
    """With ``import triton`` failing (a machine without it), hear_vec's CPU env and the
    kernels package import and run, the dispatchers take the references, and none of the
    Triton sources is ever imported."""
    code = textwrap.dedent('''
        import sys
        sys.path.insert(0, sys.argv[1])

        sys.modules["triton"] = None  # as if not installed: import fails, find_spec is None
        import torch, kernels, hear_vec
        from hear_vec import DenoiseEnv
        env = DenoiseEnv("synthetic", num_envs=2, segment_seconds=0.5,
                         min_segment_seconds=0.5, stoi_weight=1.0, estoi_weight=1.0,
                         quality_interval=1)
        env.reset()
        a = torch.tensor([[4.0, 0.5, 0.5, 0.5], [0.0, 0.5, 0.5, 0.5]])
        env.step(a)
        g = torch.rand(3, 2, 5) + 0.5
        assert torch.equal(kernels.lsa_recursion(g, g, torch.full((2, 1), 0.95)),
                           kernels.lsa_recursion_reference(g, g, torch.full((2, 1), 0.95)))
        ours = [m for m in sys.modules if m.startswith("kernels._") and m.endswith("_triton")]
        assert not kernels.triton_importable()
        print("TRITON_IMPORTED", sys.modules.get("triton") is not None or bool(ours))
    ''')
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True,
                          text=True, cwd=str(ROOT), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TRITON_IMPORTED False" in proc.stdout


def test_use_triton_is_false_for_cpu_tensors():
    assert not kernels.use_triton(torch.zeros(1))


# ------------------------------------------------------------- CUDA (skipped without a GPU)
needs_cuda = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="needs a CUDA device")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", [pytest.param("cuda", marks=needs_cuda)])
def test_compiled_kernels_on_cuda_match_references(device, dtype):
    """The real (compiled) Triton kernels against the torch references on the GPU."""
    gen = torch.Generator(device=device).manual_seed(0)
    to = dict(device=device, dtype=dtype)
    gamma = (torch.rand(40, 7, 513, generator=gen, **to) * 30) ** 2
    alpha = 0.9 + 0.09 * torch.rand(7, 1, generator=gen, **to)
    wet = (1 - alpha) * (gamma - 1).clamp_min(0)
    tol = 2e-6 if dtype == torch.float32 else 1e-7
    torch.testing.assert_close(kernels.triton_lsa_recursion(gamma, wet, alpha),
                               kernels.lsa_recursion_reference(gamma, wet, alpha),
                               rtol=0, atol=tol)
    x = torch.rand(9, 15, 154, generator=gen, **to) + 0.05
    y = 0.5 * x + 0.3 * torch.rand(9, 15, 154, generator=gen, **to)
    got, want = kernels.triton_stoi_segments(x, y), kernels.stoi_segments_reference(x, y)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5 if dtype == torch.float32 else 1e-12)
    from hear_vec import dsp
    from hear_vec.ops._common import analyze, quantile
    from hear_vec.ops.mmse_lsa import mmse_lsa_gain
    from hear_vec.ops.spectral_gate import spectral_gate_gain

    audio = torch.randn(5, 8000, generator=gen, **to) * 0.1
    spec = analyze(audio, None, True)
    knobs = torch.rand(5, 3, generator=gen, **to)
    args = (spec.X, spec.mag, torch.arange(5, device=device), knobs, quantile(spec, 0.5),
            dsp.masked_mean(spec.mag.square(), spec.fmask, keepdim=True),
            spectral_gate_gain(spec, knobs), mmse_lsa_gain(spec, knobs))
    got, want = kernels.triton_spectral_delta(*args), kernels.spectral_delta_reference(*args)
    torch.testing.assert_close(got, want, rtol=0,
                               atol=(1e-5 if dtype == torch.float32 else 1e-12)
                               * float(want.abs().max()))


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=needs_cuda)])
def test_kernels_capture_in_cuda_graphs(device):
    x = torch.rand(4, 15, 60, device=device) + 0.1
    y = torch.rand(4, 15, 60, device=device) + 0.1
    want = kernels.stoi_segments(x, y)
    kernels.stoi_segments(x, y)  # warm-up (compilation) outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = kernels.stoi_segments(x, y)
    y.mul_(0.5)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(out, kernels.stoi_segments_reference(x, y)):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
    assert not torch.equal(out[0], want[0])  # the replay read the new y


# ---------------------------------------------------------------- benchmark graph plumbing
def test_graphed_env_stepping_equals_eager_stepping_on_cpu_emulation():
    """hear_vec.env.vector.GraphedEnv (the CUDA-graph env stepper of train.py --cudagraphs),
    with replays emulated on the CPU, gives the same trajectory as plain env.step."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.throughput import random_actions
    from hear_vec import DenoiseEnv
    from hear_vec.env.vector import EmulatedGraphAPI, GraphedEnv

    kw = dict(num_envs=2, segment_seconds=0.4, min_segment_seconds=0.3, stoi_weight=1.0,
              estoi_weight=1.0, quality_interval=1, seed=3)
    plain, graphed_env = DenoiseEnv("synthetic", **kw), DenoiseEnv("synthetic", **kw)
    graphed = GraphedEnv(graphed_env, warmup=1, api=EmulatedGraphAPI())
    draw = random_actions(plain)
    with torch.inference_mode():
        plain.reset()
        graphed_env.reset()
        for _ in range(7):
            action = draw()
            want, got = plain.step(action), graphed.step(action)
            for a, b in zip(want[:4], got[:4]):
                assert torch.equal(a, b)
            assert torch.equal(want[4]["final_observation"], got[4]["final_observation"])
    assert sorted(graphed.captured) == [(False, True), (True, True)]
    assert torch.equal(plain.state.stats, graphed_env.state.stats)


# ------------------------------------------------------------------------------ bad input
def test_bad_input_raises_value_error():
    g = torch.rand(3, 2, 5)
    with pytest.raises(ValueError, match="alpha"):
        kernels.lsa_recursion(g, g, torch.rand(3, 1))
    with pytest.raises(ValueError, match="float32"):
        kernels.lsa_recursion(g.long(), g.long(), torch.rand(2, 1))
    with pytest.raises(ValueError, match="band envelopes"):
        kernels.stoi_segments(torch.rand(2, 14, 40), torch.rand(2, 14, 40))
    with pytest.raises(ValueError, match="same|one shape"):
        kernels.stoi_segments(torch.rand(2, 15, 40), torch.rand(2, 15, 41))
    X = torch.randn(2, 5, 4, dtype=torch.complex64)
    mag = X.abs()
    with pytest.raises(ValueError, match="method"):
        kernels.spectral_delta(X, mag, torch.zeros(3, dtype=torch.long), torch.rand(2, 3),
                               mag[..., :1], mag[..., :1], mag, mag)
