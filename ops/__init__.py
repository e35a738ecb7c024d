"""Running the three DAGs under a real Airflow scheduler on a throwaway PostgreSQL cluster.

Commands for humans and CI, and the pieces they are made of (each imports only those below
it, the standard library and ``core``):

- ``airflow_stack``: the command; starts the stack, runs the DAG chain, checks it, stops it
- ``run_checks``: what a finished chain must look like through the REST API
- ``airflow_api``: a client of Airflow's public REST API
- ``airflow_environment``: the environment every Airflow process of the stack gets
- ``postgres_cluster``: a throwaway PostgreSQL cluster from Debian's server binaries
- ``log_files``: tails of process logs and Airflow's JSON task logs, for failure reports
- ``local_ports``: a free TCP port on 127.0.0.1
- ``airflow_preloaded``: ``airflow <command>`` with the task-time libraries imported first
  (the scheduler command of docker-compose.yml; standalone, imports nothing of ours)
"""


class StackError(RuntimeError):
    """The stack could not be started, or the DAG runs did not succeed."""
