"""Speculative decoding: `--spec draft=MODEL,k=4,accept=0.7` or `--spec mtp,k=1,accept=0.8` (issue 8, lever 2).

A draft proposes k tokens per sequence, the target model verifies them in one forward over k + 1 positions
and keeps the accepted prefix plus one token of its own. Formulas (per decode iteration of a batch B at mean
context c):

- Expected tokens per verify step, i.i.d. per-token acceptance rate a (Leviathan, Kalman & Matias, "Fast
  Inference from Transformers via Speculative Decoding", ICML 2023, eq. 1):
      E(a, k) = (1 − a^{k+1}) / (1 − a)            (= k + 1 at a = 1, = 1 at a = 0)
- Verify step: the target model over B·(k+1) tokens through every GEMM (and the MoE experts they touch),
  attention of k + 1 queries per sequence over the same KV (read once: the extra positions are packed
  into the query-head dimension, as FlashInfer / FlashAttention decode kernels do), logits for all k + 1
  positions; one engine iteration (its CPU overhead counted once).
- Draft cost: k decode steps of the draft model at batch B (the first one also runs the draft over the
  prompt tokens the iteration carries); GPU time only — the drafts run inside the engine iteration
  (CUDA graphs), whose scheduling overhead the verify step already counts.
      draft=MODEL  a separate small model (planner.core.model.load_model), on the same GPUs with the same TP,
                   its weights and its own KV cache added to every GPU's memory;
      mtp          the target's multi-token-prediction head (DeepSeek-V3/R1: one extra decoder layer that
                   shares the embedding and LM head, `num_nextn_predict_layers` = 1; DeepSeek-V3
                   technical report §2.2): one layer of the target's shape, its KV added.
- Time per output token: TPOT = (T_verify + k·T_draft) / E. Setup.step returns this per-token time for any
  decode-carrying iteration, so the serving model's Little's law (B = λ·osl·TPOT) and TPOT percentiles
  apply unchanged; a collocated iteration's prompt share is counted in the same per-token units (the engine's
  token budget C holds B·(k+1) verify tokens plus the prompt chunk: planner/serving.collocated_state).

The optimiser picks k ∈ {0, 1, …, k_max} per instance type (k = 0: speculation off, no draft loaded): at a
small batch the step is weight-bandwidth-bound and the k extra verify tokens are nearly free, at a large
batch it turns compute-bound and speculation costs more than the accepted tokens save (the trade-off
goodput-optimised speculation, e.g. SmartSpec (Liu et al. 2024) and FASER, tune online).
Not modelled: tree drafts (EAGLE top-k > 1), acceptance that varies with position or batch, and the
per-request TPOT spread from random acceptance lengths (it averages out over osl / E iterations).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.core.errors import PlannerInputError
from planner.core.model import ModelSpec, dtype_bytes
from planner.core.parallel import ParallelConfig, validation_error

if TYPE_CHECKING:
    from planner.capacity.estimate import Setup
    from planner.perf.step import StepShape, StepTime

MAX_K = 16


@dataclass(frozen=True)
class SpecConfig:
    """What the user asked for: a draft model (or the MTP head), the most draft tokens, the acceptance rate."""
    method: str  # "draft" | "mtp"
    k_max: int
    accept: float  # per-token acceptance rate a in [0, 1]
    draft: str = ""  # draft model name or path (method "draft")

    def label(self) -> str:
        head = f"draft={self.draft}" if self.method == "draft" else "mtp"
        return f"{head},k={self.k_max},accept={self.accept:g}"


def parse_spec(text: str) -> SpecConfig:
    """'draft=llama-3.1-8b,k=4,accept=0.7' | 'mtp,k=1,accept=0.8' -> SpecConfig."""
    method, draft, k, accept = "", "", None, None
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, eq, value = (s.strip() for s in part.partition("="))
        if key == "mtp" and not eq:
            method = "mtp"
        elif key == "draft" and value:
            method, draft = "draft", value
        elif key == "k" and re.fullmatch(r"[0-9]+", value):
            k = int(value)
        elif key in ("accept", "a") and re.fullmatch(r"[0-9]*\.?[0-9]+", value):
            accept = float(value)
        else:
            raise PlannerInputError(f"--spec: expected draft=MODEL|mtp,k=N,accept=A, got '{part}' in '{text}'")
    if not method:
        raise PlannerInputError(f"--spec: name the drafter (draft=MODEL or mtp), got '{text}'")
    if k is None or not 1 <= k <= MAX_K:
        raise PlannerInputError(f"--spec: k (draft tokens per step) must be 1..{MAX_K}, got '{text}'")
    if accept is None or not 0 <= accept <= 1:
        raise PlannerInputError(f"--spec: accept (per-token acceptance rate) must be in [0, 1], got '{text}'")
    return SpecConfig(method, k, accept, draft)


def expected_tokens(accept: float, k: int) -> float:
    """E(a, k) = (1 − a^{k+1}) / (1 − a): tokens a sequence gains per verify step (Leviathan et al. 2023)."""
    if k <= 0:
        return 1.0
    if accept >= 1:
        return float(k + 1)
    return (1 - accept ** (k + 1)) / (1 - accept)


@dataclass(frozen=True)
class Speculation:
    """Speculation resolved for one instance: k fixed, the draft model and where it runs."""
    config: SpecConfig
    k: int
    draft: ModelSpec
    draft_par: ParallelConfig
    shares_embedding: bool  # MTP: embedding and LM head are the target's (no extra weights for them)

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens(self.config.accept, self.k)

    def chunk_units(self, chunk_tokens: float) -> tuple[float, float]:
        """(token budget, budget tokens per decoding sequence) of one iteration, in per-output-token units:
        a real iteration spends k + 1 budget tokens per sequence and lasts E per-token iterations."""
        e = self.tokens_per_step
        return chunk_tokens / e, (self.k + 1) / e


def _mtp_model(target: ModelSpec) -> ModelSpec:
    """The MTP head as a one-layer model of the target's shape (a MoE layer for DeepSeek-V3)."""
    return dataclasses.replace(target, name=f"{target.name}-mtp", num_layers=1, first_k_dense=0,
                               num_sliding_layers=0, sliding_window=0)


def _draft_par(draft: ModelSpec, par: ParallelConfig, domain: int) -> ParallelConfig:
    """Same TP (and attention-DP) as the target where the draft's heads allow it, else the largest smaller
    power of two that does; no PP / EP for a separate draft."""
    tp = par.tp
    while tp > 1 and validation_error(draft, ParallelConfig(tp, 1, 1, par.dp), max(domain, tp * par.dp)):
        tp //= 2
    return ParallelConfig(tp, 1, 1, par.dp)


def resolve(config: SpecConfig | None, target: ModelSpec, par: ParallelConfig, k: int,
            domain: int = 8) -> Speculation | None:
    """Speculation with k draft tokens on an instance of `target` with `par` (None: k = 0 or no config)."""
    if config is None or k <= 0:
        return None
    if config.method == "mtp":
        return Speculation(config, k, _mtp_model(target), par, True)
    from planner.core.model import load_model

    draft = load_model(config.draft)
    if draft.vocab_size != target.vocab_size:
        raise PlannerInputError(f"--spec: draft {draft.name} has vocabulary {draft.vocab_size}, target "
                                f"{target.name} has {target.vocab_size}; a draft must share the tokenizer")
    return Speculation(config, k, draft, _draft_par(draft, par, domain), False)


def check_config(config: SpecConfig, target: ModelSpec) -> None:
    """Fail early (bad input, exit 2) on a draft that cannot serve this target, or `mtp` for a target without a
    multi-token-prediction head (engines load the MTP weights from the checkpoint: no head, nothing to run)."""
    if config.method == "mtp" and not target.mtp_layers:
        raise PlannerInputError(f"--spec: mtp needs a model with a multi-token-prediction head "
                                f"(num_nextn_predict_layers > 0); {target.name} has none, use draft=MODEL")
    resolve(config, target, ParallelConfig(1, 1, 1, 1), 1)


def extra_memory(spec: Speculation, dtype: str, kv_dtype: str) -> tuple[float, float]:
    """(weight bytes, KV bytes per context token) the drafter adds on each GPU."""
    from planner.perf.memory import embedding_params_per_gpu, kv_bytes_per_token_per_gpu, weight_bytes_per_gpu

    d, par = spec.draft, spec.draft_par
    weights = weight_bytes_per_gpu(d, par, dtype)
    if spec.shares_embedding:  # MTP: drop the shared embedding / LM head, add its 2h -> h projection
        weights += (2 * d.hidden_size * d.hidden_size / par.tp - embedding_params_per_gpu(d, par)) * dtype_bytes(dtype)
    return max(weights, 0.0), kv_bytes_per_token_per_gpu(d, par, kv_dtype)


def speculative_step(setup: Setup, shape: StepShape) -> StepTime:
    """One speculative iteration of `setup` for `shape`, as time per output token (module docstring).
    `shape.prefill_tokens` are the prompt tokens per output-token step: the real iteration carries E× as many."""
    from planner.perf.step import StepShape, StepTime, step_time

    spec = setup.spec
    assert spec is not None, "speculative_step runs only for an instance with speculation (Setup.chunk_units)"
    e = spec.tokens_per_step
    prompt = shape.prefill_tokens * e
    verify = step_time(setup.model, setup.gpu, setup.par,
                       StepShape(shape.decode_seqs, shape.decode_context, prompt, shape.prefill_seq_len,
                                 spec.k + 1),
                       engine=setup.engine, dtype=setup.dtype, kv_dtype=setup.kv_dtype, skew=setup.skew)

    def draft(s):
        return step_time(spec.draft, setup.gpu, spec.draft_par, s, engine=setup.engine, dtype=setup.dtype,
                         kv_dtype=setup.kv_dtype, skew=setup.skew if spec.shares_embedding else 1.0).gpu_s

    first = draft(StepShape(shape.decode_seqs, shape.decode_context, prompt, shape.prefill_seq_len))
    rest = (spec.k - 1) * draft(StepShape(shape.decode_seqs, shape.decode_context)) if spec.k > 1 else 0.0
    gpu_s = verify.gpu_s + first + rest
    return StepTime((gpu_s + verify.overhead_s) / e, gpu_s / e, verify.overhead_s / e, verify.stage_ops,
                    verify.pp)

