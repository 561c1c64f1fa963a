"""`esm up`: a SAM / CloudFormation template's functions and event source mappings, run by the engine."""
