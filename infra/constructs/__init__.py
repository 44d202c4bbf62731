"""One CDK construct per component; the stacks in infra/stacks only compose them."""
