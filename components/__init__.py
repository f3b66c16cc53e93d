"""Components and pure builders of the gitlab-buildkit-runner stack."""
