"""Noise schedules for experiments: :mod:`serialrepro.schedules`, re-exported here.

The shapes and the equal-noise transforms live below the grid layer so that commands
(``serialrepro simulate``) use them without importing experiments.
"""

from __future__ import annotations

from serialrepro.schedules import (
    MIN_STD_LEVEL,
    SCHEDULE_KINDS,
    SCHEDULE_SHAPES,
    UNIFORM_DISPLACEMENT_VARIANCE,
    Schedule,
    ScheduleShape,
    check_representable,
    displacement_std,
    level_for_std,
    register_shape,
    scale_to_total_variance,
    schedule_shape,
)

__all__ = ["MIN_STD_LEVEL", "SCHEDULE_KINDS", "SCHEDULE_SHAPES", "UNIFORM_DISPLACEMENT_VARIANCE",
           "Schedule", "ScheduleShape", "check_representable", "displacement_std",
           "level_for_std", "register_shape", "scale_to_total_variance", "schedule_shape"]
