package api

import "github.com/zerverless/zerverless/internal/api/apitest"

var _ Service = (*apitest.Service)(nil)
