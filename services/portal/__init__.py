"""门户: the web dashboard of ProposalFlow, one page per role, rendered on the server.

It owns no data: every page is read from the services' HTTP APIs and every form is sent to the
service that owns the change, with the signed-in person's own token.
"""
