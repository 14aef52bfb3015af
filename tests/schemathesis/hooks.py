"""Schemathesis hooks for tests/schemathesis.rs (SCHEMATHESIS_HOOKS).

Only what JSON Schema cannot state is filtered here; everything else the
service refuses is in the document.
"""

import schemathesis


# On whole cases: the coverage phase, which builds its cases itself,
# applies case hooks only.
@schemathesis.hook("filter_case")
def password_apart_from_email(context, case):
    # A password must not contain its email's local part: a rule between
    # two fields, which a schema cannot write. Generated registrations that
    # break it would be refused with 422 though the schema calls them valid.
    operation = context.operation
    if operation is None or operation.path != "/api/auth/register/with-plan":
        return True
    body = case.body
    if not isinstance(body, dict):
        return True
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        return True
    local = email.strip().lower().split("@")[0]
    return local not in password.lower()
