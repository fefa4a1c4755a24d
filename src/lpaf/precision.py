"""Which numeric precision a job runs in: ``precision: auto | fp32 | bf16``.

bf16 autocast is only worth having where the hardware runs it natively. On a CUDA
device that is ``torch.cuda.is_bf16_supported()``. On a CPU it depends on the
instruction set (AVX512-BF16 or AMX): without it torch emulates bf16 and a training
step of MiniLM was measured 18-24x *slower* than fp32 (2-core AMD EPYC Zen 3). What
torch reports about the CPU (``torch.backends.cpu.get_cpu_capability()``, oneDNN's
bf16 support) is recorded but not trusted alone: ``auto`` times the two on the
model's own layer shapes (one feed-forward block, forward and backward, at
``tokens`` tokens: about a second) and keeps bf16 only if it is faster by
:data:`MIN_SPEEDUP`. The timing is cached per machine (CPU model and flags, torch
version, instruction-set limits, threads, shapes) in ``$LPAF_CACHE_DIR`` (default
``~/.cache/lpaf``), so every job of a run makes the same choice without measuring
again. An explicit ``bf16`` on a CPU where it is slower is kept, with a warning
that gives the measured ratio.

Every stage records the outcome (:meth:`PrecisionChoice.record`) in its
``metrics.json`` / ``evaluation.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SETTINGS = ("auto", "fp32", "bf16")
RESOLVED = ("fp32", "bf16")
# bf16 must be at least this much faster (fp32 time / bf16 time) to be chosen by auto:
# it costs accuracy, so a tie goes to fp32.
MIN_SPEEDUP = 1.1
DEFAULT_TOKENS = 1024
CACHE_VERSION = 1


@dataclass(frozen=True)
class Timing:
    """Median seconds of one forward+backward pass of the probe block in each precision."""

    fp32_seconds: float
    bf16_seconds: float

    @property
    def bf16_speedup(self) -> float:
        """fp32 time / bf16 time: > 1 when bf16 is faster."""
        return self.fp32_seconds / self.bf16_seconds if self.bf16_seconds > 0 else float("inf")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a job uses, the setting it came from and why."""

    precision: str  # fp32 | bf16
    setting: str  # auto | fp32 | bf16
    reason: str
    timing: Timing | None = None
    cached: bool = False

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "precision": self.precision,
            "setting": self.setting,
            "reason": self.reason,
        }
        if self.timing is not None:
            out.update(
                probe_fp32_ms=round(1000 * self.timing.fp32_seconds, 3),
                probe_bf16_ms=round(1000 * self.timing.bf16_seconds, 3),
                bf16_speedup=float(f"{self.timing.bf16_speedup:.4g}"),
                probe_cached=self.cached,
            )
        out["cpu_capability"] = cpu_capability()
        return out


def check_setting(setting: str) -> str:
    if setting not in SETTINGS:
        raise ValueError(f"precision must be one of {SETTINGS}, got {setting!r}")
    return setting


def choose(timing: Timing, min_speedup: float = MIN_SPEEDUP) -> str:
    """``auto``'s decision from measured timings: bf16 only if it is at least
    ``min_speedup`` times faster than fp32."""
    return "bf16" if timing.bf16_speedup >= min_speedup else "fp32"


def cpu_capability() -> dict[str, Any]:
    """What torch says about this CPU (recorded; the timing decides)."""
    info: dict[str, Any] = {"aten": torch.backends.cpu.get_cpu_capability()}
    try:
        info["mkldnn_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # not every build has the op
        info["mkldnn_bf16"] = None
    return info


def _cpu_identity() -> str:
    """CPU model name and flags (Linux), else what ``platform`` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    model = flags = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = " ".join(sorted(value.split()))
        if model and flags:
            break
    return f"{model} | {hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def machine_key(hidden: int, intermediate: int, tokens: int, threads: int) -> str:
    """Everything the probe's outcome depends on, as one string."""
    parts = [
        f"v{CACHE_VERSION}",
        _cpu_identity(),
        f"torch {torch.__version__}",
        f"aten {torch.backends.cpu.get_cpu_capability()}",
        f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')}",
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}",
        f"threads {threads}",
        f"shape {hidden}x{intermediate}x{tokens}",
    ]
    return " ; ".join(parts)


def cache_path() -> Path:
    root = os.environ.get("LPAF_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "lpaf"
    )
    return Path(root) / "precision.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, timing: Timing) -> None:
    """Add one entry; written to a temporary file and renamed, so a reader never sees
    half a file (a concurrent writer may drop another's entry: it is re-measured)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = {**asdict(timing), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not stop a job
        log.warning("could not write the precision cache %s: %s", path, exc)


def probe_cpu(
    hidden: int, intermediate: int, tokens: int = DEFAULT_TOKENS, repeats: int = 3
) -> Timing:
    """Median time of one forward+backward pass of a transformer feed-forward block
    (``Linear(hidden, intermediate)``, GELU, ``Linear(intermediate, hidden)``) on
    ``tokens`` tokens, in fp32 and under bf16 autocast, after one untimed pass each.
    The two precisions alternate so that a change of load hits both alike."""
    # The caller's random streams stay untouched (a job's results must not depend on
    # whether the timing came from the cache).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = torch.nn.Sequential(
            torch.nn.Linear(hidden, intermediate),
            torch.nn.GELU(),
            torch.nn.Linear(intermediate, hidden),
        )
        x = torch.randn(tokens, hidden)

    def one(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = block(x).float().square().mean()
        loss.backward()
        block.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(repeats + 1):
        for bf16 in (False, True):
            seconds = one(bf16)
            if i > 0:
                times[bf16].append(seconds)
    return Timing(statistics.median(times[False]), statistics.median(times[True]))


def cpu_timing(
    hidden: int, intermediate: int, tokens: int = DEFAULT_TOKENS, use_cache: bool = True
) -> tuple[Timing, bool]:
    """The probe's timing on this machine, from the cache when it has one: ``(timing,
    cached)``."""
    key = machine_key(hidden, intermediate, tokens, torch.get_num_threads())
    path = cache_path()
    if use_cache:
        entry = _read_cache(path).get(key)
        if entry is not None:
            try:
                return Timing(float(entry["fp32_seconds"]), float(entry["bf16_seconds"])), True
            except (KeyError, TypeError, ValueError):
                pass
    timing = probe_cpu(hidden, intermediate, tokens)
    if use_cache:
        _write_cache(path, key, timing)
    return timing, False


def model_shapes(model_config: Any) -> tuple[int, int]:
    """(hidden size, feed-forward size) of a Hugging Face config (BERT-style names)."""
    hidden = int(getattr(model_config, "hidden_size", 768))
    intermediate = int(getattr(model_config, "intermediate_size", 4 * hidden))
    return hidden, intermediate


def resolve(
    setting: str,
    device: torch.device | str,
    model_config: Any = None,
    tokens: int = DEFAULT_TOKENS,
    use_cache: bool = True,
) -> PrecisionChoice:
    """The precision a job on ``device`` uses for the configured ``setting``."""
    check_setting(setting)
    device = torch.device(device)
    if setting == "fp32":
        return PrecisionChoice("fp32", setting, "set in the config")
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if setting == "bf16":
            if not supported:
                log.warning("precision: bf16 on %s, which has no native bf16", device)
            return PrecisionChoice("bf16", setting, "set in the config")
        if supported:
            return PrecisionChoice("bf16", setting, "auto: CUDA device with native bf16")
        return PrecisionChoice("fp32", setting, "auto: CUDA device without native bf16")
    if device.type != "cpu":
        if setting == "bf16":
            return PrecisionChoice("bf16", setting, "set in the config")
        return PrecisionChoice("fp32", setting, f"auto: no bf16 probe for {device.type}")
    hidden, intermediate = model_shapes(model_config)
    timing, cached = cpu_timing(hidden, intermediate, tokens, use_cache=use_cache)
    speedup = timing.bf16_speedup
    if setting == "bf16":
        if speedup < 1.0:
            log.warning(
                "precision: bf16 is set, but bf16 autocast is %.1fx SLOWER than fp32 on "
                "this CPU (%.1f ms vs %.1f ms per %dx%d feed-forward block on %d tokens): "
                "it has no native bf16 kernels; use precision: auto or fp32",
                1.0 / speedup,
                1000 * timing.bf16_seconds,
                1000 * timing.fp32_seconds,
                hidden,
                intermediate,
                tokens,
            )
        return PrecisionChoice("bf16", setting, "set in the config", timing, cached)
    chosen = choose(timing)
    if chosen == "bf16":
        reason = f"auto: bf16 autocast {speedup:.2f}x faster than fp32 on this CPU"
    elif speedup < 1.0:
        reason = f"auto: bf16 autocast {1.0 / speedup:.2f}x slower than fp32 on this CPU"
    else:
        reason = (
            f"auto: bf16 autocast only {speedup:.2f}x faster than fp32 on this CPU "
            f"(needs {MIN_SPEEDUP}x)"
        )
    log.info("precision %s (%s)", chosen, reason)
    return PrecisionChoice(chosen, setting, reason, timing, cached)
