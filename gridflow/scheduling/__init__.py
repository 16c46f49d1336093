"""Appliance scheduling core (no Flink, no I/O): problem model, Touhs et al. 2024 heap scheduler, MILP reference.

>>> from gridflow.scheduling import Appliance, Problem, Tariff, schedule_heap
>>> schedule_heap(Problem((Appliance("tv", "fixed", 300, 2, 1, 3),), Tariff([1, 1, 1]))).start_slot("tv")
1
"""

from gridflow.scheduling.heap_scheduler import ScheduleInfeasible, schedule_heap
from gridflow.scheduling.milp import MilpResult, solve_milp
from gridflow.scheduling.model import Appliance, Problem, Schedule, Tariff

__all__ = [
    "Appliance",
    "MilpResult",
    "Problem",
    "Schedule",
    "ScheduleInfeasible",
    "Tariff",
    "schedule_heap",
    "solve_milp",
]
