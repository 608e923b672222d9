"""Public finance: tax schedules, preferences and best responses, welfare, optimal taxation (no Mesa, no LLM)."""
