"""The batched denoiser of ``infer.py``: loaded files -> rows -> device batches -> outputs.

Each file is resampled to the model's rate (:func:`hear_vec.resample.resample`, on the
device), each channel cut into chunks (:func:`~hear_vec.cli.infer_chunks.chunk_plan`); every
(channel, chunk) is one row. Rows of similar length are padded into batches within
``--batch-size`` rows and the padded-sample budget, carrying their ``lengths`` (padding never
changes a result), and each batch goes through :meth:`DenoisingAgent.run` once per
checkpoint. A CUDA out-of-memory error halves the batch and retries. The rows of a file are
then joined (crossfade), resampled back to the file's rate and cut to its exact length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hear_vec.cli.common import first_line, length_batches, pad_rows
from hear_vec.cli.infer_chunks import chunk_plan, crossfade_join
from hear_vec.cli.infer_jobs import FileJob
from hear_vec.inference import DenoisingAgent
from hear_vec.ops import METHODS
from hear_vec.resample import resample

__all__ = ["Runner"]


@dataclass
class _Row:
    job: int        # index into the group's job list
    channel: int
    chunk: int
    start: int
    end: int


@dataclass
class _Prepared:
    """A group's rows: (job, channel, chunk) with their model-rate audio."""

    rows: list[_Row] = field(default_factory=list)
    tensors: list[Tensor] = field(default_factory=list)
    plans: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    model_audio: dict[int, Tensor] = field(default_factory=dict)


class Runner:
    """Runs the agents on groups of loaded files (rows = channels x chunks)."""

    def __init__(self, agents: list[DenoisingAgent], device: torch.device, steps: list[int],
                 batch_size: int, batch_samples: int, chunk: int, overlap: int) -> None:
        self.agents = agents
        self.device = device
        self.steps = steps
        self.batch_size = batch_size
        self.batch_samples = batch_samples
        self.chunk = chunk
        self.overlap = overlap
        self.rate = agents[0].sample_rate

    def resample(self, x: Tensor, orig: int, new: int) -> Tensor:
        """``x`` from ``orig`` to ``new`` Hz (:func:`hear_vec.resample.resample`)."""
        return resample(x, orig, new)

    def _run_rows(self, agent: DenoisingAgent, steps: int, rows: list[Tensor]
                  ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(audio, methods [S], knobs [S, 3]) per row; OOM halves the batch and retries."""
        try:
            batch, lengths = pad_rows(rows)
            res = agent.run(batch, lengths, steps)
        except torch.OutOfMemoryError:
            if len(rows) == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(rows) // 2
            return (self._run_rows(agent, steps, rows[:half])
                    + self._run_rows(agent, steps, rows[half:]))
        methods, knobs = res.methods.cpu(), res.knobs.cpu()
        return [(res.audio[i, : rows[i].shape[-1]], methods[i], knobs[i])
                for i in range(len(rows))]

    @torch.inference_mode()
    def process(self, jobs: list[FileJob]) -> list[tuple[FileJob, int, np.ndarray]]:
        """Denoise the loaded ``jobs`` (errors go to ``job.error``); returns (job, checkpoint,
        audio [C, n] float32 at the input's rate) to write, and fills ``job.results`` and
        ``job.noisy_mono``."""
        prepared = self._prepare(jobs)
        outputs: list[tuple[FileJob, int, np.ndarray]] = []
        for a in range(len(self.agents)):
            done = self._denoise_rows(jobs, prepared, a)
            by_job: dict[int, list[int]] = {}
            for i in done:
                by_job.setdefault(prepared.rows[i].job, []).append(i)
            for j, idx in by_job.items():
                if jobs[j].error is None:
                    audio = self._assemble(jobs[j], j, a, prepared, idx, done)
                    if audio is not None:
                        outputs.append((jobs[j], a, audio))
        for j, x in prepared.model_audio.items():  # model-rate mono of the inputs, for metrics
            jobs[j].noisy_mono = x.mean(0)
        return outputs

    def _prepare(self, jobs: list[FileJob]) -> _Prepared:
        """Resample each loaded job to the model rate and cut it into rows."""
        prepared = _Prepared()
        for j, job in enumerate(jobs):
            if job.error is not None or job.audio is None:
                continue
            try:
                x = torch.from_numpy(job.audio).to(self.device)
                x = self.resample(x, job.sample_rate, self.rate)
                plan = chunk_plan(x.shape[-1], self.chunk, self.overlap)
            except Exception as err:  # resampling a pathological file
                job.error = f"cannot prepare ({first_line(err, 160)})"
                continue
            prepared.model_audio[j] = x
            prepared.plans[j] = plan
            for c in range(x.shape[0]):
                for k, (s, e) in enumerate(plan):
                    prepared.rows.append(_Row(j, c, k, s, e))
                    prepared.tensors.append(x[c, s:e])
        return prepared

    def _denoise_rows(self, jobs: list[FileJob], prepared: _Prepared, a: int
                      ) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
        """Checkpoint ``a`` on every row whose job wants its output, in device batches."""
        rows, tensors = prepared.rows, prepared.tensors
        mine = [i for i, r in enumerate(rows) if jobs[r.job].outputs[a] is not None
                and jobs[r.job].error is None]
        done: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        lengths = [tensors[i].shape[-1] for i in mine]
        for batch in length_batches(lengths, self.batch_size, self.batch_samples):
            idx = [mine[b] for b in batch]
            try:
                results = self._run_rows(self.agents[a], self.steps[a], [tensors[i] for i in idx])
            except Exception as err:
                reason = ("out of memory (try a smaller --chunk-seconds or --batch-size)"
                          if isinstance(err, torch.OutOfMemoryError)
                          else f"denoising failed ({first_line(err, 160)})")
                for i in idx:
                    jobs[rows[i].job].error = jobs[rows[i].job].error or reason
                continue
            done.update(zip(idx, results))
        return done

    def _assemble(self, job: FileJob, j: int, a: int, prepared: _Prepared, idx: list[int],
                  done: dict[int, tuple[Tensor, Tensor, Tensor]]) -> np.ndarray | None:
        """Join job ``j``'s denoised rows: crossfade the chunks of each channel, resample to
        the file's rate, cut to its exact length; fills ``job.results[a]``."""
        rows, x = prepared.rows, prepared.model_audio[j]
        channels, segments = [], []
        for c in range(x.shape[0]):
            mine_c = sorted((i for i in idx if rows[i].channel == c), key=lambda i: rows[i].chunk)
            pieces = [done[i][0] for i in mine_c]
            channels.append(crossfade_join(pieces, prepared.plans[j], x.shape[-1], self.overlap))
            segments += [_segment(rows[i], done[i][1], done[i][2], self.rate) for i in mine_c]
        denoised = torch.stack(channels)
        if not bool(torch.isfinite(denoised).all()):
            job.error = "denoising produced NaN/Inf samples (is the input far out of range?)"
            return None
        back = self.resample(denoised, self.rate, job.sample_rate)
        n = job.frames
        if back.shape[-1] < n:
            back = torch.nn.functional.pad(back, (0, n - back.shape[-1]))
        job.results[a] = {"segments": segments, "model_mono": denoised.mean(0)}
        return back[..., :n].float().cpu().numpy()


def _segment(row: _Row, methods: Tensor, knobs: Tensor, rate: int) -> dict[str, Any]:
    """The trace of one row: the steps of its chain, ending with ``{"method": "stop"}`` when
    the agent chose the stop action (later steps, id -1, were not taken)."""
    steps: list[dict[str, Any]] = []
    for m, (s, sm, b) in zip(methods.tolist(), knobs.tolist()):
        if m < 0:
            break
        if m >= len(METHODS):  # the stop action: the audio is kept as it is
            steps.append({"method": "stop", "method_id": m})
            break
        steps.append({"method": METHODS[m], "method_id": m, "strength": round(s, 4),
                      "smoothing": round(sm, 4), "band_mix": round(b, 4)})
    return {"channel": row.channel, "start": round(row.start / rate, 4),
            "end": round(row.end / rate, 4), "steps": steps}
