"""One module per source kind, each holding what differs for it: its profile (defaults, the policies its
parameters give, which response fields apply) and how its runner is built from its transports.
``engine.sources.registry.profile_of`` looks a profile up by kind; nothing else branches on the kind."""
