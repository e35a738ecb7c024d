"""Presentation of the evaluation: the business-case report rendered with Jinja2 from data the
estimators return (`render`), its figures (`plots`), number formatting (`formatting`) and
plain-text summaries of results (`text`). Estimation modules never import from here.
"""
