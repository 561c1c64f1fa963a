"""Lambda API errors, as the control plane returns them (type, HTTP status, message key)."""

from __future__ import annotations

from typing import Any, ClassVar


class LambdaError(Exception):
    """An error the Lambda API returns to the caller as rest-json.

    ``error_kind`` is the ``Type`` field ("User" / "Service"; None for model-level validation errors),
    ``message_key`` is the casing AWS uses for the message of this exception type.
    """

    code: ClassVar[str] = "ServiceException"
    status: ClassVar[int] = 500
    error_kind: ClassVar[str | None] = "Service"
    message_key: ClassVar[str] = "Message"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {self.message_key: self.message}
        if self.error_kind is not None:
            body["Type"] = self.error_kind
        return body

    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.code}


class InvalidParameterValueException(LambdaError):
    code = "InvalidParameterValueException"
    status = 400
    error_kind = "User"
    message_key = "message"


class ValidationException(LambdaError):
    """Model-level constraint violations (ranges, enums, patterns): no ``Type`` field."""

    code = "ValidationException"
    status = 400
    error_kind = None
    message_key = "message"


class SerializationException(LambdaError):
    code = "SerializationException"
    status = 400
    error_kind = "User"
    message_key = "message"


class ResourceConflictException(LambdaError):
    code = "ResourceConflictException"
    status = 409
    error_kind = "User"
    message_key = "message"


class ResourceInUseException(LambdaError):
    code = "ResourceInUseException"
    status = 400
    error_kind = "User"
    message_key = "Message"


class ResourceNotFoundException(LambdaError):
    code = "ResourceNotFoundException"
    status = 404
    error_kind = "User"
    message_key = "Message"


class TooManyRequestsException(LambdaError):
    code = "TooManyRequestsException"
    status = 429
    error_kind = "User"
    message_key = "message"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after_s)}


class ServiceException(LambdaError):
    code = "ServiceException"
    status = 500
    error_kind = "Service"
    message_key = "Message"


class UnknownOperationException(LambdaError):
    code = "UnknownOperationException"
    status = 404
    error_kind = "User"
    message_key = "message"
