"""The direct executor: concurrent Messages API calls at the rate limit (jobs, budget, limiter, progress)."""
