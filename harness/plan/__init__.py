"""Plan: expand a Matrix into cells with stable content-hash ids, feasibility and memory estimates."""

from harness.plan.cell import CellPlan, MemoryEstimate, Plan
from harness.plan.planner import plan_matrix

__all__ = ["CellPlan", "MemoryEstimate", "Plan", "plan_matrix"]
