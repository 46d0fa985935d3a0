"""Alembic environment: migrations run on the connection embeddinghub.migrate hands in."""

from alembic import context

connection = context.config.attributes["connection"]
connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS embeddinghub")
context.configure(
    connection=connection,
    version_table_schema="embeddinghub",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
