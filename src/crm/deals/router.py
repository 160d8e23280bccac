from fastapi import APIRouter

router = APIRouter(prefix="/deals", tags=["deals"])
