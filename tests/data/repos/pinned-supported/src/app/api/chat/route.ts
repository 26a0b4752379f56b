import { streamText } from "ai";
import { openai } from "@/lib/openai";

export const runtime = "edge";
// Pinned: OpenAI does not serve Hong Kong (hkg1), so never let the edge pick a region.
export const preferredRegion = [
  "iad1",
  "sfo1",
] as const;

export async function POST(req: Request) {
  const { messages } = await req.json();
  const result = streamText({ model: openai("gpt-4o"), messages });
  return result.toDataStreamResponse();
}
