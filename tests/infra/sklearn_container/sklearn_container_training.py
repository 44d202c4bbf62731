"""The scikit-learn container's training module (``SAGEMAKER_TRAINING_MODULE``), re-created.

The prebuilt image's ``sagemaker_sklearn_container.training:main`` is not published on the
package registry; all it does is hand the environment to the toolkit's runner, as below.
"""

from sagemaker_training import entry_point, environment, runner


def main() -> None:
    """Install and run the user's entry point, as the container's module does."""
    env = environment.Environment()
    entry_point.run(
        uri=env.module_dir,
        user_entry_point=env.user_entry_point,
        args=env.to_cmd_args(),
        env_vars=env.to_env_vars(),
        runner_type=runner.ProcessRunnerType,
    )
