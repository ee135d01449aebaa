"""Model sources (embedded / hub / local) and architecture facts the planner needs."""
