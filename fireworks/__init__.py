"""Fireworks: run and steer a fleet of Python workers over RabbitMQ."""
