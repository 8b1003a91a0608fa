"""Everything that talks to RabbitMQ. The only package that imports pika."""
