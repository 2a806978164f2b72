"""The search service's bodies as Pydantic models: what `/openapi.json` and `/docs` show for each
endpoint of `pipelines.serve`, and what each answer is checked against before it is sent.

Field order follows the dictionaries `catalogue.Hit.as_json`, `predict.PhotoTags.as_json` and
`serve` build, so the JSON the page reads is the same; a field that may be absent says so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, RootModel

from pipelines.config import Item


class ErrorBody(BaseModel):
    """Every refusal: one line saying what was wrong and what is allowed."""

    detail: str = Field(description="What was wrong with the request, and what would be accepted.")


# --- a photo's tags (/predict, /similar) -----------------------------------------------------


class ComponentPrediction(BaseModel):
    label: str = Field(description="The component's class, or `unknown` below the class's tuned threshold.")
    probability: float = Field(description="The best class's probability, 0–1.")
    best_guess: str = Field(description="The most probable class, even when `label` is `unknown`.")
    probabilities: dict[str, float] = Field(description="Every class of the component → its probability.")
    model_version: str = Field(description="The registered model version (the champion) that tagged it.")
    box: list[float] | None = Field(
        description="x0, y0, x1, y1 of the detected region in the photo's pixels; null when none was used."
    )
    crop: str | None = Field(
        default=None,
        description="The crop the classifier saw, as a `data:image/jpeg;base64,` URL; absent when none was kept.",
    )


class PhotoPrediction(BaseModel):
    components: dict[str, ComponentPrediction] = Field(description="Component name → its tag for this photo.")
    skipped: dict[str, str] = Field(description="Component name → why it has no tag (e.g. no jeans found).")
    items: list[Item] = Field(description="The garments the tags are about, e.g. a photo showing a shirt and jeans.")


# --- catalogue products (/search, /similar) -------------------------------------------------


class CatalogueTag(BaseModel):
    label: str = Field(description="The class the champion gave this catalogue photo, or `unknown`.")
    best_guess: str | None = Field(description="The most probable class, even when `label` is `unknown`.")
    probability: float = Field(description="The probability of `best_guess`, 0–1.")
    crop: str | None = Field(description="URL of the crop the classifier saw; null when none was stored.")


class CatalogueProduct(BaseModel):
    sha256: str = Field(description="The product's best-matching photo (content hash).")
    product_url: str = Field(description="The product's page in its shop.")
    title: str = Field(description="The product's title as crawled.")
    source: str = Field(description="The crawl source (shop) it came from.")
    image: str = Field(description="URL of the photo on this service.")
    score: float = Field(
        description="/search: the mean probability of the wanted labels; /similar: the share of the photo's labels "
        "it has."
    )
    tags: dict[str, CatalogueTag] = Field(description="Component name → the photo's tag in the catalogue.")
    shared: list[str] = Field(description="The components whose wanted label this product has.")


class SimilarProduct(CatalogueProduct):
    similarity: float = Field(
        description="Mean cosine similarity of backbone features over the components both photos were tagged on "
        "(-1 when none could be compared)."
    )


class SearchPage(BaseModel):
    total: int = Field(description="Products matching every filter (each product once).")
    page: int = Field(description="This page's number, 1-based.")
    per_page: int = Field(description="Products per page.")
    pages: int = Field(description="How many pages there are (at least 1).")
    filters: dict[str, str] = Field(description="The filters applied, by component name → wanted class.")
    items: list[CatalogueProduct] = Field(description="This page's products, best combined probability first.")


class SimilarProducts(BaseModel):
    photo: PhotoPrediction = Field(description="The uploaded photo's tags, as /predict gives them.")
    matched_on: list[str] = Field(description="The components whose label (not `unknown`) products were matched on.")
    items: list[SimilarProduct] = Field(
        description="Products sharing the most of those labels first, then by feature similarity."
    )


# --- the service itself (/attributes, /health) ---------------------------------------------


class AttributeInfo(BaseModel):
    attribute: str = Field(description="The short query name (`collar`), or the component's name where it is shared.")
    item: Item = Field(description="The garment the component describes.")
    classes: list[str] = Field(description="The classes a filter on this attribute accepts.")
    model_version: str | None = Field(description="The champion version serving it; null when none is loaded.")


class Attributes(RootModel[dict[str, AttributeInfo]]):
    """Component name → how to query it and the model behind it."""


class CatalogueState(BaseModel):
    images: int = Field(description="Photos in the catalogue.")
    products: int = Field(description="Distinct products in the catalogue.")
    stale_components: list[str] = Field(
        description="Components whose catalogue tags come from another version than the one loaded."
    )
    path: str = Field(description="The catalogue file the service reads.")


class Health(BaseModel):
    status: Literal["ok", "stale", "degraded"] = Field(
        description="`ok`; `stale` while some catalogue tags are from another model version; `degraded` when the "
        "catalogue cannot be read (tagging still works)."
    )
    models: dict[str, str] = Field(description="Component name → the loaded champion's version.")
    catalogue: CatalogueState | None = Field(description="The catalogue's size and freshness; null when degraded.")
    problem: str | None = Field(default=None, description="Why the catalogue cannot be read; only when degraded.")
