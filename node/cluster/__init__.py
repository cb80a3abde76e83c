"""Several nodes, one exchange: markets spread over nodes, linked by RabbitMQ, sharing PostgreSQL."""
