"""Assets that chain the three DAGs: each zone publishes one, the next is scheduled on it."""
from airflow.sdk import Asset

PSEUDONYMISED_TABLES = Asset(name="pseudonymised_tables", uri="ltceval://analytical/pseudonymised")
EVALUATION_PANEL = Asset(name="evaluation_panel", uri="ltceval://analytical/mart_evaluation_panel")
BUSINESS_CASE_REPORT = Asset(name="business_case_report", uri="ltceval://reports/business_case")
