"""Thermal models of a cold chain: a fridge or shipper around a set point, with noise, door openings and a
cooler that fails and recovers. Deterministic for a seed; temperature is a function of time (ms)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from coldtrace.core.model import HOUR, MINUTE


@dataclass
class CoolerFailure:
    start_ms: int
    duration_ms: int
    ambient_c: float = 22.0  # where the load drifts to while the cooler is off
    tau_ms: int = 90 * MINUTE  # thermal time constant of the load


@dataclass
class ThermalModel:
    setpoint_c: float = 5.0
    noise_c: float = 0.08
    seed: int = 0
    door_openings_per_hour: float = 0.0
    door_rise_c: float = 2.5
    door_recover_ms: int = 8 * MINUTE
    failures: list[CoolerFailure] = field(default_factory=list)
    stuck_from_ms: int | None = None  # a sensor fault: the value freezes from this time
    # a probe that loses contact: in these (start, end) windows it reads the bottom of its range
    probe_faults: list[tuple[int, int]] = field(default_factory=list)
    probe_fault_c: float = -40.0

    def _door_effect(self, t_ms: int) -> float:
        if self.door_openings_per_hour <= 0:
            return 0.0
        slot = 10 * MINUTE
        k = t_ms // slot
        rise = 0.0
        for j in (k - 1, k):  # an opening in this or the previous slot may still be recovering
            rng = random.Random((self.seed * 1_000_003) ^ int(j))
            if rng.random() < self.door_openings_per_hour * slot / HOUR:
                opened = j * slot + int(rng.random() * slot)
                dt = t_ms - opened
                if 0 <= dt < self.door_recover_ms * 4:
                    rise += self.door_rise_c * math.exp(-dt / self.door_recover_ms)
        return rise

    def _failure_effect(self, t_ms: int) -> float:
        delta = 0.0
        for f in self.failures:
            dt = t_ms - f.start_ms
            if dt <= 0:
                continue
            gap = f.ambient_c - self.setpoint_c
            if dt <= f.duration_ms:
                delta += gap * (1 - math.exp(-dt / f.tau_ms))
            else:  # cooler back: pulls down faster than it warmed
                peak = gap * (1 - math.exp(-f.duration_ms / f.tau_ms))
                delta += peak * math.exp(-(dt - f.duration_ms) / (f.tau_ms / 3))
        return delta

    def temperature(self, t_ms: int) -> float:
        if any(a <= t_ms < b for a, b in self.probe_faults):
            return self.probe_fault_c
        if self.stuck_from_ms is not None and t_ms >= self.stuck_from_ms:
            t_ms = self.stuck_from_ms
        noise = random.Random((self.seed << 20) ^ (t_ms // 1000)).gauss(0, self.noise_c)
        value = self.setpoint_c + self._failure_effect(t_ms) + self._door_effect(t_ms) + noise
        return round(value, 2)
