"""Benchmarks, run by hand (`python -m bench`): Fireworks beside the raw pika floor and
Celery, on one private RabbitMQ node, in one run. See docs/benchmarks.md."""
