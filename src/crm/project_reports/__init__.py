"""The projects report: counts and sums grouped by status, industry, district, program or curator."""
