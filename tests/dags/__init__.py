"""DAG tests: every DAG in dags/ imports cleanly, is documented and retried, and runs."""
