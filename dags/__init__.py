"""Airflow 3 DAGs: each file wires functions of the packages into TaskFlow tasks (see README.md).

A package only so that the layer contract (``make lint``) can see what the DAG files import;
Airflow parses this file like any other and finds no DAG in it.
"""
