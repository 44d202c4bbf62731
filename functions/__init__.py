"""Lambda function code: each subpackage is one bundle."""
