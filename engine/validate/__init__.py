"""Validation of the Lambda API's request bodies, in AWS's two layers: the service model's constraints
(service_model: botocore's bundled model, walked), then the rules of the requests: event source mappings
(mappings: AWS's order of checks, canonical parameters, the rules every source shares; what differs per
source is read from its profile in engine/sources/) and tags (tags)."""
