"""The demo (`make demo`, `proposalflow demo`, `python -m services.portal.demo`): a year of the
city's proposals and the story of a key proposal, played through the services' APIs."""
