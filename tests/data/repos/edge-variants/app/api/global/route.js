import { openai } from '@ai-sdk/openai';
import { streamText } from 'ai';

export const runtime = `edge`;
export const preferredRegion = `global`;

export async function POST(req) {
  const { prompt } = await req.json();
  return streamText({ model: openai('gpt-4o'), prompt }).toTextStreamResponse();
}
