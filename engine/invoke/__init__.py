"""Invokers: in-process Python handlers (python), the Lambda Invoke API (lambda_api), and the registry
that resolves a mapping's FunctionName to one of them (registry)."""
