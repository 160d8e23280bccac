from fastapi import APIRouter

router = APIRouter(prefix="/companies", tags=["companies"])
