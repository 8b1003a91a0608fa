"""The monitor: keeps the fleet's desired and observed state and steers it."""
