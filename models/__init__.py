"""Pure Pydantic models shared by the monitor and the workers (no broker I/O)."""
