"""`esm soak`: a load against real mappings and real function code, for minutes or hours, accounted record
by record (the ledger), and a report that answers "is it safe" (report.html, summary.json, CSVs).

The soak is a client of the engine, as a user's pipeline is: it runs the engine in a process of its own
(so a fault can SIGKILL it), creates the mappings over the Lambda API, produces to the sources with their
own SDKs, and wraps the function (soak.tap) to see every invocation and inject faults.
"""
