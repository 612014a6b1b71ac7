"""What a user's likely first mistakes look like from inside, said as what to do instead of a traceback.

The exceptions come from deep in the stacks under a command (botocore under s3fs under
fsspec, requests under Ray's job client); their own text rarely names the setting to fix.
Anything not recognised here is not a user's mistake and keeps its traceback.
"""

from __future__ import annotations

from ..pipeline.storage import NO_CREDENTIALS_HINT, StorageError, cause_chain, credentials_missing


def explain(exc: BaseException) -> str | None:
    """A one-paragraph explanation with the fix, or None when `exc` is not a recognised mistake."""
    if credentials_missing(exc):
        return f"{NO_CREDENTIALS_HINT}; tv3s takes credentials from where botocore looks, never from the command line"
    for link in cause_chain(exc):
        name = type(link).__name__
        if name == "EndpointConnectionError":
            endpoint = getattr(link, "kwargs", {}).get("endpoint_url", "the endpoint")
            return (
                f"cannot connect to the object store at {endpoint}: check --endpoint-url (or AWS_ENDPOINT_URL) "
                "and that the server is up"
            )
        response = getattr(link, "response", None)
        if isinstance(response, dict) and "Error" in response:
            return _client_error(response)
        if name == "ConnectionError" and type(link).__module__.startswith("requests"):
            request = getattr(link, "request", None)
            where = getattr(request, "url", None) or "the address given"
            return f"cannot reach {where}: check --address (a Ray dashboard, http://HEAD:8265) and that it is up"
    for link in cause_chain(exc):
        if isinstance(link, StorageError):  # the data plane's own record names the object and the fix
            return f"{link.record.url}: {link.record.message}; {link.record.hint}"
    return None


def _client_error(response: dict) -> str | None:
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    code = str(response["Error"].get("Code", ""))
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") or status == 403:
        return (
            f"the object store refused the credentials in use ({code or status}): check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and the bucket's policy"
        )
    if code == "NoSuchBucket":
        return f"no such bucket ({response['Error'].get('BucketName') or 'as named'}): check the URL"
    return None
